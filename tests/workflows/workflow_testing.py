"""Helpers of the workflow tests: the shipped workflows, placeholder model files, waiting for a prompt."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

from make_workflows import MODEL_FILES, MODEL_INPUTS, WORKFLOW_BUILDERS, WORKFLOWS

HERE = Path(__file__).resolve().parent


@functools.cache
def frontend_harness():
    """tests/frontend/conftest.py (`Server`, `Browser`, `requirements`, and `host`: tests/host/conftest.py) as a
    plain module, loaded once; its fixtures and hooks stay with its own folder."""
    spec = importlib.util.spec_from_file_location("psi_frontend_harness", HERE.parent / "frontend" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def essentials(workflow: dict) -> dict:
    """What a workflow means, apart from what a host version adds or where nodes sit: node types, titles
    and widget values; each input's name, type and link; the outputs that feed a link; the links.
    (A newer host can add outputs to its nodes — ComfyUI 0.33's SaveImage/PreviewImage gained an IMAGE
    output — which changes nothing a workflow connects, but the sizes the builder estimates.)"""
    nodes = {}
    for node in workflow["nodes"]:
        nodes[node["id"]] = {
            "type": node["type"], "title": node.get("title"), "mode": node.get("mode", 0),
            "widgets_values": node.get("widgets_values"),
            "inputs": [(i["name"], i["type"], i.get("link")) for i in node.get("inputs", [])],
            "outputs": [(o["name"], o["type"], sorted(o["links"])) for o in node.get("outputs", []) if o.get("links")],
        }
    return {"nodes": nodes, "links": sorted(tuple(link) for link in workflow["links"]),
            "groups": sorted((g["title"], g["color"]) for g in workflow.get("groups", []))}


def load_workflows() -> dict[str, dict]:
    return {stem: json.loads((WORKFLOWS / f"{stem}.json").read_text(encoding="utf-8")) for stem in WORKFLOW_BUILDERS}


def write_placeholders(models_dir: Path, workflows: dict[str, dict]) -> list[Path]:
    """Empty stand-ins for every model file or folder the workflows' loaders name (validation never loads
    them; running a prompt stops with an error at the first one)."""
    loader_types = {node_type for node_type, _ in MODEL_INPUTS}
    made = []
    for workflow in workflows.values():
        for node in workflow["nodes"]:
            if node["type"] not in loader_types:
                continue
            for value in node.get("widgets_values") or []:
                entry = MODEL_FILES.get(value) if isinstance(value, str) else None
                if entry is None:
                    continue
                path = models_dir / entry.folder / entry.name
                if entry.folder_kind:  # a transformers folder: config naming its model_type, weights, tokenizer
                    path.mkdir(parents=True, exist_ok=True)
                    (path / "config.json").write_text(json.dumps({"model_type": entry.folder_kind}))
                    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
                        (path / name).touch()
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
                made.append(path)
    return made
