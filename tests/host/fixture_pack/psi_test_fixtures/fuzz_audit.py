"""Records every file-system access of the server process whose path names the fuzz
test's sentinel folder (a folder outside every model folder), through a Python audit
hook (PEP 578: the `open`, `os.listdir` and `os.scandir` events carry the path; a
bare existence check (os.stat) raises no event and reads nothing). GET /psi_test/outside_reads returns the records, so the fuzz test can
assert that no input made the pack read outside the model folders."""

from __future__ import annotations

import sys

SENTINEL = "psi_fuzz_outside"
READS: list[str] = []


def _hook(event: str, args: tuple) -> None:
    if event not in ("open", "os.listdir", "os.scandir", "os.walk", "glob.glob", "shutil.copyfile"):
        return
    for arg in args[:1]:
        text = arg.decode(errors="replace") if isinstance(arg, bytes) else arg
        if isinstance(text, str) and SENTINEL in text:
            READS.append(f"{event} {text}")


def install() -> None:
    sys.addaudithook(_hook)
    try:
        from aiohttp import web
        from server import PromptServer
    except ImportError:  # not inside a ComfyUI server
        return
    if getattr(PromptServer, "instance", None) is None:  # imported by a probe, with no server running
        return

    @PromptServer.instance.routes.get("/psi_test/outside_reads")
    async def outside_reads(request):
        return web.json_response(list(READS))


def _any_node():
    from comfy_api.latest import io

    class PsiTestAnything(io.ComfyNode):
        """Outputs a JSON value as ComfyUI's any type ("*"), which links to every input: the
        way a value of the wrong kind reaches a node's `execute` past ComfyUI's type check."""

        @classmethod
        def define_schema(cls):
            return io.Schema(
                node_id="PsiTestAnything", display_name="Ψ test: any value", category="testing/psi",
                inputs=[io.String.Input("json", default="null", multiline=True, tooltip="JSON value.")],
                outputs=[io.AnyType.Output("value", tooltip="The decoded value, of type *.")])

        @classmethod
        def execute(cls, json):
            import json as json_module
            return io.NodeOutput(json_module.loads(json))

    return PsiTestAnything


NODES = [_any_node()]
