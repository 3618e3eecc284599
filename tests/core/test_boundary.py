"""The pack's boundary with ComfyUI: only the host package `comfy_host` imports ComfyUI's
internals (node modules may also import the node schema, `comfy_api`), and the pure
parts (`psi_core`, `rewards`, `visualizer`) import nothing of ComfyUI.

Read from the source with `ast`, so imports inside functions and `importlib.import_module`
calls with a literal name count as well; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOST_PACKAGE = "comfy_host"
PURE_PACKAGES = ("psi_core", "rewards", "visualizer")
NOT_PACK = ("tests", "bench", ".venv", "out", "docs", "scripts", "js", "workflows")
#: ComfyUI's top-level modules besides the `comfy` package (its `nodes` is ComfyUI's own nodes.py)
HOST_MODULES = ("folder_paths", "server", "latent_preview", "comfy_execution", "nodes", "comfyui_version")
SCHEMA = "comfy_api"


def imported_names(source: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`: `import x`, `from x import y`
    (relative imports are the pack's own and skipped) and `importlib.import_module("x")` /
    `import_module("x")` / `__import__("x")` with a literal name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def is_comfyui(module: str) -> bool:
    top = module.split(".")[0]
    return top in ("comfy", SCHEMA) or top in HOST_MODULES


def violations(path: Path, source: str) -> list[str]:
    """The ComfyUI imports the pack's file at `path` (relative to the repository) may not make."""
    top = path.parts[0] if len(path.parts) > 1 else ""
    bad = []
    for line, module in imported_names(source):
        if not is_comfyui(module) or top == HOST_PACKAGE:
            continue
        if top in PURE_PACKAGES or module.split(".")[0] != SCHEMA:
            bad.append(f"{path}:{line} imports {module}")
    return bad


def pack_files() -> list[Path]:
    files = [p.relative_to(REPO) for p in REPO.rglob("*.py")]
    return sorted(p for p in files if p.parts[0] not in NOT_PACK and not p.parts[0].startswith("."))


def test_the_walk_sees_every_part_of_the_pack():
    tops = {p.parts[0] for p in pack_files() if len(p.parts) > 1}
    assert {HOST_PACKAGE, "nodes", *PURE_PACKAGES} <= tops


def test_only_the_host_package_imports_comfyui_internals():
    bad = [v for path in pack_files() for v in violations(path, (REPO / path).read_text(encoding="utf-8"))]
    assert not bad, "ComfyUI imported outside comfy_host:\n" + "\n".join(bad)


@pytest.mark.parametrize("path, source", [
    ("nodes/scorer.py", "import comfy.model_management as mm\n"),
    ("nodes/scorer.py", "def f():\n    import folder_paths\n"),
    ("nodes/scorer.py", "def f():\n    from server import PromptServer\n"),
    ("nodes/scorer.py", "import importlib\nimportlib.import_module('comfy.samplers')\n"),
    ("nodes/scorer.py", "from nodes import NODE_CLASS_MAPPINGS\n"),
    ("nodes/scorer.py", "from comfy_execution.utils import get_executing_context\n"),
    ("nodes/scorer.py", "import latent_preview\n"),
    ("__init__.py", "import comfy.utils\n"),
    ("psi_core/smc.py", "from comfy_api.latest import io\n"),
    ("rewards/aesthetic.py", "def f():\n    import comfy.clip_model\n"),
    ("visualizer/grid.py", "import folder_paths\n"),
])
def test_a_planted_comfyui_import_is_found(path, source):
    assert violations(Path(path), source), source


@pytest.mark.parametrize("path, source", [
    ("comfy_host/memory.py", "import comfy.model_management\nimport folder_paths\n"),
    ("nodes/scorer.py", "from comfy_api.latest import io, ui\nfrom ..comfy_host.memory import reward_on\n"),
    ("nodes/reward_models.py", "from . import types\nimport importlib\nimportlib.import_module('transformers')\n"),
    ("psi_core/smc.py", "import torch\nfrom .weights import LogWeights\n"),
])
def test_allowed_imports_pass(path, source):
    assert violations(Path(path), source) == []
