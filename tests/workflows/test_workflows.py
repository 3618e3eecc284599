"""The shipped workflows against a real ComfyUI and its real frontend.

- every workflows/*.json means what make_workflows.py builds from this host's node schemas (node types, widget
  values, links: what a host version adds to its output nodes aside), and has a thumbnail;
- the server offers them as templates (with thumbnails);
- each loads in the frontend (headless Chromium) with no missing node types, every widget holding the value
  the file gives it, and the frontend's own graphToPrompt equals this folder's UI -> API converter;
- the server validates each converted prompt with no errors at all (the model files it names exist as empty
  placeholders in the test host's model folders);
- the zero-download workflow runs end to end, its checkpoint loader and text encoders replaced by the test
  fixture's tiny random-weight SD1.5-like model and conditioning.
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import urllib.parse

import pytest
from make_workflows import MODEL_INPUTS, WORKFLOW_BUILDERS, WORKFLOWS, ZERO_DOWNLOAD_STEM, build_all
from workflow_convert import FRONTEND_ONLY, to_api, widget_values
from workflow_testing import essentials

STEMS = list(WORKFLOW_BUILDERS)
PSI_NODES = {"PsiInitialSampler", "PsiSMCSampler", "PsiParticleVisualizer"}

LOAD_AND_CONVERT = """async (workflow) => {
  await app.loadGraphData(workflow, true, true, null);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const registered = LiteGraph.registered_node_types;
  const missing = [...new Set(workflow.nodes.map((n) => n.type).filter((t) => !(t in registered)))];
  const nodes = {};
  for (const node of app.graph.nodes) {
    nodes[node.id] = {type: node.type, widgets: (node.widgets || []).map((w) => [w.name, w.value]),
                      rect: [node.pos[0], node.pos[1] - LiteGraph.NODE_TITLE_HEIGHT, node.size[0],
                             node.size[1] + LiteGraph.NODE_TITLE_HEIGHT]};
  }
  const converted = await app.graphToPrompt();
  return {missing, nodes, output: converted.output};
}"""


def test_every_workflow_file_has_a_thumbnail_and_nothing_else_is_there():
    from PIL import Image

    expected = {f"{stem}.{ext}" for stem in STEMS for ext in ("json", "jpg")}
    present = {p.name for p in WORKFLOWS.iterdir() if p.is_file()}
    assert present == expected
    for stem in STEMS:
        with Image.open(WORKFLOWS / f"{stem}.jpg") as image:
            assert image.format == "JPEG" and image.width >= 256 and image.height >= 192


def test_workflows_use_only_pack_and_core_nodes_and_explain_model_files(workflows):
    for stem, workflow in workflows.items():
        types = {n["type"] for n in workflow["nodes"]}
        assert {"PsiInitialSampler", "PsiSMCSampler", "PsiParticleVisualizer", "Note"} <= types, stem
        notes = " ".join(n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "Note")
        assert "models/" in notes, f"{stem}: no note says where the model files go"
        for node in workflow["nodes"]:
            if any(node["type"] == t for t, _ in MODEL_INPUTS):
                assert "models/" in node.get("title", ""), f"{stem}: {node['type']} title names no model folder"


def test_files_mean_what_make_workflows_builds_from_the_live_schemas(object_info, workflows):
    """Node types, widget values and links equal what this host's schemas build (see `essentials`)."""
    stale = [stem for stem, (workflow, _) in build_all(object_info).items()
             if essentials(workflows[stem]) != essentials(workflow)]
    assert not stale, f"node schemas changed: run tests/workflows/make_workflows.py to rebuild {stale}"


def test_server_offers_the_workflows_as_templates_with_thumbnails(server):
    templates = server.get("/workflow_templates")
    assert sorted(templates.get("psi_sampler", [])) == sorted(STEMS)
    for stem in STEMS:
        assert server.get_bytes(f"/api/workflow_templates/psi_sampler/{stem}.jpg")[:3] == b"\xff\xd8\xff", stem


@pytest.fixture(scope="module")
def frontend(in_browser, workflows) -> dict[str, dict]:
    """What the frontend made of each workflow: missing types, widgets, node rectangles, graphToPrompt."""
    return in_browser(lambda page: {stem: page.js(LOAD_AND_CONVERT, wf) for stem, wf in workflows.items()})


@pytest.mark.parametrize("stem", STEMS)
def test_loads_in_the_frontend_with_no_missing_node_types(stem, frontend, workflows):
    result = frontend[stem]
    assert result["missing"] == []
    assert sorted(int(i) for i in result["nodes"]) == sorted(n["id"] for n in workflows[stem]["nodes"])


@pytest.mark.parametrize("stem", STEMS)
def test_no_nodes_overlap_as_the_frontend_draws_them(stem, frontend):
    """Sizes as the frontend computes them, with this pack's extensions (live chart, box editor) drawn."""
    rects = {int(i): n["rect"] for i, n in frontend[stem]["nodes"].items()}
    overlapping = [(a, b) for a, b in itertools.combinations(sorted(rects), 2)
                   if _overlap(rects[a], rects[b])]
    assert not overlapping, f"{stem}: overlapping nodes {overlapping} (rebuild with make_workflows.py, adjusting " \
                            "FRONTEND_MIN_SIZE where a node's drawn widgets grew)"


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


@pytest.mark.parametrize("stem", STEMS)
def test_frontend_widgets_hold_the_values_in_the_file(stem, frontend, workflows, object_info):
    for node in workflows[stem]["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        shown = dict(frontend[stem]["nodes"][str(node["id"])]["widgets"])
        expected = widget_values(node, object_info[node["type"]])
        assert set(expected) <= set(shown), f"{stem} node {node['id']} {node['type']}: widgets {sorted(shown)}"
        for name, value in expected.items():
            assert shown[name] == pytest.approx(value) if isinstance(value, float) else shown[name] == value, (
                f"{stem} node {node['id']} {node['type']}.{name}: frontend {shown[name]!r}, file {value!r}")


@pytest.mark.parametrize("stem", STEMS)
def test_frontend_prompt_equals_the_converter(stem, frontend, workflows, object_info):
    ours = to_api(workflows[stem], object_info)
    theirs = frontend[stem]["output"]
    assert sorted(theirs) == sorted(ours)
    for node_id, node in ours.items():
        assert theirs[node_id]["class_type"] == node["class_type"]
        assert theirs[node_id]["inputs"] == node["inputs"], f"{stem} node {node_id} {node['class_type']}"


@pytest.mark.parametrize("stem", STEMS)
def test_server_validates_the_prompt(stem, server, workflows, object_info):
    prompt = to_api(workflows[stem], object_info)
    status, reply = server.queue(prompt)
    assert status == 200 and reply.get("node_errors") == {}, json.dumps(reply, indent=1)[:3000]
    # it was queued: it stops at the first placeholder model file; wait so the next test starts on an idle host
    entry = server.history(reply["prompt_id"])
    loaders = {node_type for node_type, _ in MODEL_INPUTS}
    for kind, data in entry["status"].get("messages", []):
        if kind == "execution_error":  # only a placeholder file may fail to load
            assert data["node_type"] in loaders, f"{stem}: {data['node_type']}: {data['exception_message']}"


def tiny_model_prompt(prompt: dict, object_info: dict) -> dict:
    """The zero-download prompt on the fixture's tiny random-weight SD1.5-like model, small and quick."""
    prompt = copy.deepcopy(prompt)
    (ckpt,) = [i for i, n in prompt.items() if n["class_type"] == "CheckpointLoaderSimple"]
    encoders = {i for i, n in prompt.items() if n["class_type"] == "CLIPTextEncode"}
    tiny_types = object_info["PsiTestTinyModel"]["output"]  # MODEL, VAE, CONDITIONING (+), CONDITIONING (−)
    ckpt_types = object_info["CheckpointLoaderSimple"]["output"]
    conditioning = [i for i, t in enumerate(tiny_types) if t == "CONDITIONING"]
    tiny_slot = {"positive": conditioning[0], "negative": conditioning[1]}
    role = {}
    for node in prompt.values():
        for name, value in node["inputs"].items():
            if isinstance(value, list) and value[0] in encoders:
                assert role.setdefault(value[0], name) == name and name in ("positive", "negative")
    for encoder in encoders:
        del prompt[encoder]
    prompt[ckpt] = {"class_type": "PsiTestTinyModel", "inputs": {"family": "sd15", "seed": 0}}
    for node in prompt.values():
        for name, value in node["inputs"].items():
            if isinstance(value, list) and value[0] == ckpt:
                node["inputs"][name] = [ckpt, tiny_types.index(ckpt_types[value[1]])]
            elif isinstance(value, list) and value[0] in encoders:
                node["inputs"][name] = [ckpt, tiny_slot[role[value[0]]]]
    small = {"EmptyLatentImage": {"width": 64, "height": 64},
             "PsiInitialSampler": {"steps": 3, "particles": 2, "chains": 2, "burn_in": 1, "mcmc_steps": 2},
             "PsiSMCSampler": {"steps": 3, "particles": 2}}
    for node in prompt.values():
        node["inputs"].update(small.get(node["class_type"], {}))
    return prompt


def test_zero_download_workflow_runs_end_to_end_on_a_tiny_model(server, workflows, object_info):
    from PIL import Image

    workflow = workflows[ZERO_DOWNLOAD_STEM]
    prompt = tiny_model_prompt(to_api(workflow, object_info), object_info)
    assert {n["class_type"] for n in prompt.values()} >= PSI_NODES | {"PsiImageStatsReward", "PsiTestTinyModel"}
    status, reply = server.queue(prompt)
    assert status == 200 and reply.get("node_errors") == {}, json.dumps(reply, indent=1)[:3000]
    entry = server.history(reply["prompt_id"])
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:3000]

    by_type = {n["class_type"]: i for i, n in prompt.items()}
    saved = entry["outputs"][by_type["SaveImage"]]["images"]
    assert len(saved) == 1  # output "best": one image
    previews = [i for i, n in prompt.items() if n["class_type"] == "PreviewImage"]
    assert all(entry["outputs"].get(i, {}).get("images") for i in previews)
    sizes = []
    for image in [saved[0]] + [entry["outputs"][i]["images"][0] for i in previews]:
        query = urllib.parse.urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
        with Image.open(io.BytesIO(server.get_bytes(f"/view?{query}"))) as picture:
            sizes.append(picture.size)
    assert sizes[0] == (64, 64)  # the result; then the visualizer's grid and curves
    assert all(w > 64 and h > 64 for w, h in sizes[1:])
