"""Queue one prompt on a ComfyUI server and record its websocket events (host tests).

Run with the host's python: the websocket is driven with aiohttp, which every
ComfyUI ships (no client library the host would not have); the project's test venv
has no ComfyUI dependencies. Prints one JSON object:

    {"prompt_id", "node_errors", "error", "events": [{"type", "data", "t"}],
     "interrupt_sent_at": index into events or null, "finished": bool}

Usage: python ws_driver.py HOST:PORT PROMPT_JSON_FILE [--interrupt-after TYPE:N] [--timeout S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid

import aiohttp

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

    print(json.dumps(asyncio.run(drive(options.host, prompt, options.interrupt_after, options.timeout))))


async def drive(host: str, prompt: dict, interrupt_after: str | None, timeout: float) -> dict:
    """Open the websocket, queue `prompt`, record its events until it ends (or `timeout` s)."""
    client_id = str(uuid.uuid4())
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(f"ws://{host}/ws?clientId={client_id}", max_msg_size=0) as ws:
        loop = asyncio.get_running_loop()
        status, reply = await loop.run_in_executor(
            None, post, f"http://{host}/prompt", {"prompt": prompt, "client_id": client_id})
        result = {"prompt_id": reply.get("prompt_id"), "node_errors": reply.get("node_errors"),
                  "error": reply.get("error"), "status": status, "events": [], "interrupt_sent_at": None,
                  "finished": False}
        if status != 200 or not result["prompt_id"]:
            return result
        trigger_type, trigger_count = (None, 0)
        if interrupt_after:
            trigger_type, count = interrupt_after.split(":")
            trigger_count = int(count)
        start = time.time()
        seen = 0
        while (left := timeout - (time.time() - start)) > 0:
            try:
                message = await ws.receive(timeout=left)
            except asyncio.TimeoutError:
                break
            if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                break
            if message.type != aiohttp.WSMsgType.TEXT:
                continue  # binary previews
            event = json.loads(message.data)
            data = event.get("data") or {}
            if data.get("prompt_id") not in (None, result["prompt_id"]):
                continue
            result["events"].append({"type": event["type"], "data": data, "t": time.time() - start})
            if event["type"] == trigger_type:
                seen += 1
                if seen == trigger_count and result["interrupt_sent_at"] is None:
                    await loop.run_in_executor(None, post, f"http://{host}/interrupt", {})
                    result["interrupt_sent_at"] = len(result["events"]) - 1
            if event["type"] in END_TYPES or (event["type"] == "executing" and data.get("node") is None
                                               and data.get("prompt_id") == result["prompt_id"]):
                result["finished"] = True
                break
        return result


if __name__ == "__main__":
    main()
