"""Reading a prompt's results from the server's /history entry (shared by the host test modules)."""

from __future__ import annotations


def outputs_of(entry: dict, node_id: str, key: str) -> list:
    return entry["outputs"].get(node_id, {}).get(key, [])


def ui_items(entry: dict, key: str) -> dict:
    """{label: item} of every fixture ui item named `key` in a history entry."""
    found = {}
    for node_output in entry["outputs"].values():
        for item in node_output.get(key, []):
            found[item.get("label", "")] = item
    return found


def error_message(entry: dict) -> str:
    for kind, data in entry["status"].get("messages", []):
        if kind == "execution_error":
            return data.get("exception_message", "")
    return ""


def assert_success(entry: dict, server) -> None:
    assert entry["status"]["status_str"] == "success", f"{error_message(entry)}\n{server.log_tail()}"
