"""Queue one prompt on a ComfyUI server and record its websocket events (host tests).

Run with the host's python (it has `websocket-client`); the project's test venv
has no ComfyUI dependencies. Prints one JSON object:

    {"prompt_id", "node_errors", "error", "events": [{"type", "data", "t"}],
     "interrupt_sent_at": index into events or null, "finished": bool}

Usage: python ws_driver.py HOST:PORT PROMPT_JSON_FILE [--interrupt-after TYPE:N] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
import uuid

import websocket

END_TYPES = ("execution_error", "execution_interrupted", "execution_success")


def post(url: str, payload: dict | None) -> tuple[int, dict]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            body = reply.read()
            return reply.status, (json.loads(body) if body else {})
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("prompt_file")
    parser.add_argument("--interrupt-after", default=None, help="TYPE:N, e.g. psi.mcmc_step:2")
    parser.add_argument("--timeout", type=float, default=120.0)
    options = parser.parse_args()
    with open(options.prompt_file) as f:
        prompt = json.load(f)

    client_id = str(uuid.uuid4())
    ws = websocket.create_connection(f"ws://{options.host}/ws?clientId={client_id}", timeout=options.timeout)
    status, reply = post(f"http://{options.host}/prompt", {"prompt": prompt, "client_id": client_id})
    result = {"prompt_id": reply.get("prompt_id"), "node_errors": reply.get("node_errors"), "error": reply.get("error"),
              "status": status, "events": [], "interrupt_sent_at": None, "finished": False}
    if status != 200 or not result["prompt_id"]:
        print(json.dumps(result))
        return
    trigger_type, trigger_count = (None, 0)
    if options.interrupt_after:
        trigger_type, count = options.interrupt_after.split(":")
        trigger_count = int(count)
    start = time.time()
    seen = 0
    while time.time() - start < options.timeout:
        message = ws.recv()
        if not isinstance(message, str):
            continue  # binary previews
        event = json.loads(message)
        data = event.get("data") or {}
        if data.get("prompt_id") not in (None, result["prompt_id"]):
            continue
        result["events"].append({"type": event["type"], "data": data, "t": time.time() - start})
        if event["type"] == trigger_type:
            seen += 1
            if seen == trigger_count and result["interrupt_sent_at"] is None:
                post(f"http://{options.host}/interrupt", {})
                result["interrupt_sent_at"] = len(result["events"]) - 1
        if event["type"] in END_TYPES:
            result["finished"] = True
            break
        if event["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == result["prompt_id"]:
            result["finished"] = True
            break
    ws.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
