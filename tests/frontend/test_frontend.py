"""The pack's frontend extensions (js/) in the real ComfyUI frontend, in headless Chromium.

- The extensions load: both are registered in app.extensions, their files are served,
  no console or page error mentions them, nodes get their widgets, removal cleans up.
- The live chart receives psi.* events during a real run queued from the page (tiny
  random-weight model): one point per MCMC iteration and per SMC step, cleared on a new run.
- The box editor: boxes drawn, renamed, moved, resized and deleted with real mouse and
  keyboard input end up in the `boxes` widget as the normalised JSON the layout reward
  parses, graphToPrompt() carries it, and a saved workflow reloads it.
Screenshots of the chart and the editor go to the screenshot folder (see conftest).
"""

from __future__ import annotations

import json

import frontend_graphs as graphs
import host_graphs
import pytest

from rewards.targets import LayoutTarget

OUR_FILES = ("psi_common.js", "psi_live_chart.js", "psi_box_editor.js")
EXTENSIONS = ("psi.live_chart", "psi.box_editor")

EXT = "(name) => app.extensions.find((e) => e.name === name)"


def our_errors(browser) -> list[str]:
    return [e for e in browser.errors if "psi_" in e or "/extensions/psi_sampler" in e]


def focus_node(browser, node_id, margin=(40, 60)) -> dict:
    """Scroll the graph canvas to put node `node_id` at the top left (scale 1); returns its screen box."""
    return browser.js("""async ([id, margin]) => {
        const node = app.graph.getNodeById(id);
        app.canvas.ds.scale = 1;
        app.canvas.ds.offset = [-node.pos[0] + margin[0], -node.pos[1] + margin[1]];
        app.canvas.setDirty(true, true);
        for (let i = 0; i < 4; i++) await new Promise((r) => requestAnimationFrame(r));
        const rect = app.canvas.canvas.getBoundingClientRect();
        return {x: rect.left + margin[0], y: rect.top + margin[1] - 30, width: node.size[0],
                height: node.size[1] + 30};
    }""", [node_id, list(margin)])


def clip_screenshot(browser, path, box):
    path.parent.mkdir(parents=True, exist_ok=True)
    pad = 12
    browser.page.screenshot(path=str(path), clip={"x": max(box["x"] - pad, 0), "y": max(box["y"] - pad, 0),
                                                  "width": box["width"] + 2 * pad, "height": box["height"] + 2 * pad})


# --------------------------------------------------------------------------- loading


def test_extensions_load(server, browser):
    names = browser.js("() => app.extensions.map((e) => e.name)")
    for name in EXTENSIONS:
        assert name in names
    served = server.get("/extensions")
    for file in OUR_FILES:
        assert f"/extensions/psi_sampler/{file}" in served
    assert our_errors(browser) == []

    created = browser.js("""() => {
        const out = {};
        for (const type of ["PsiInitialSampler", "PsiSMCSampler", "PsiSMCSamplerCustom", "PsiLayoutReward"]) {
            const node = LiteGraph.createNode(type);
            app.graph.add(node);
            const chart = app.extensions.find((e) => e.name === "psi.live_chart").chartData(node.id);
            const editor = app.extensions.find((e) => e.name === "psi.box_editor").editorFor(node.id);
            const widgets = node.widgets.map((w) => w.name);
            const saved = node.serialize().widgets_values.length;
            app.graph.remove(node);
            out[type] = {widgets, saved, chart: chart !== null, editor: editor !== null,
                         chartAfter: app.extensions.find((e) => e.name === "psi.live_chart").chartData(node.id),
                         editorAfter: app.extensions.find((e) => e.name === "psi.box_editor").editorFor(node.id)};
        }
        return out;
    }""")
    for node_type in ("PsiInitialSampler", "PsiSMCSampler", "PsiSMCSamplerCustom"):
        info = created[node_type]
        assert info["widgets"][-1] == "psi_live_chart" and info["chart"]
        assert info["saved"] <= len(info["widgets"]) - 1  # the chart is not saved in workflows
        assert info["chartAfter"] is None  # removed with its node
    layout = created["PsiLayoutReward"]
    assert "psi_box_editor" in layout["widgets"] and layout["editor"] and layout["editorAfter"] is None
    assert our_errors(browser) == []


# --------------------------------------------------------------------------- live chart


def queue_from_page(browser, seed_node: str, seed: int, widget: str = "seed") -> str:
    """Queue the page's graph (with a new seed) like the Queue button; returns the prompt id when done."""
    return browser.js("""async ([seedNode, seed, name]) => {
        app.graph.getNodeById(seedNode).widgets.find((w) => w.name === name).value = seed;
        const done = new Promise((resolve) => {
            const finish = (event) => resolve(event.detail?.prompt_id ?? null);
            api.addEventListener("execution_success", finish, {once: true});
            api.addEventListener("execution_error", () => resolve("error"), {once: true});
        });
        await app.queuePrompt(0, 1);
        return await done;
    }""", [seed_node, seed, widget])


def test_live_chart_receives_events(server, browser, screenshot_dir):
    particles, steps = 4, 4
    prompt, ids = graphs.live_run(particles=particles, steps=steps)
    browser.js("(prompt) => app.loadApiJson(prompt, 'psi live chart test')", prompt)
    # fixed seeds: the seed widgets would otherwise change after queueing
    browser.js("""(ids) => { for (const id of ids) {
        const w = app.graph.getNodeById(id).widgets.find((x) => x.name === "control_after_generate");
        if (w) w.value = "fixed"; } }""", [ids["initial"], ids["smc"]])

    results = []
    for seed in (1, 2):
        prompt_id = queue_from_page(browser, ids["initial"], seed)
        assert prompt_id not in (None, "error"), server.log_tail()
        data = browser.js(f"""(ids) => {{ const ext = ({EXT})("psi.live_chart");
            return {{initial: ext.chartData(ids.initial), smc: ext.chartData(ids.smc)}}; }}""", ids)
        results.append((prompt_id, data))
        mcmc = data["initial"]["mcmc"]
        assert [p["iteration"] for p in mcmc] == [1, 2, 3]  # one point per MCMC iteration, this run only
        assert data["initial"]["promptId"] == prompt_id
        assert all(0.0 <= p["acceptance"] <= 1.0 and p["mean"] <= p["max"] + 1e-12 for p in mcmc)
        smc = data["smc"]["smc"]
        assert [p["step"] for p in smc] == list(range(1, steps + 1))  # cleared on the new run, not appended
        assert data["smc"]["promptId"] == prompt_id
        for point in smc:
            assert point["k"] == particles and point["total"] == steps
            assert 0.0 < point["ess"] <= particles + 1e-9
            assert point["mean"] is not None and point["mean"] <= point["max"] + 1e-12
    assert results[0][0] != results[1][0]
    assert results[0][1]["smc"]["smc"] != results[1][1]["smc"]["smc"]  # another seed, other numbers

    status = browser.js("(id) => app.graph.getNodeById(id).psiLiveChart.status.textContent", ids["smc"])
    assert status.startswith(f"SMC {steps}/{steps}")
    box = focus_node(browser, ids["smc"])
    clip_screenshot(browser, screenshot_dir / "live_chart_smc.png", box)
    box = focus_node(browser, ids["initial"])
    clip_screenshot(browser, screenshot_dir / "live_chart_initial.png", box)
    assert our_errors(browser) == []


def test_live_chart_on_custom_sampler(server, browser):
    """SamplerCustomAdvanced sends the events; the chart of the PsiSMCSamplerCustom linked to it gets them."""
    prompt, _ = host_graphs.custom_advanced("sd15", psi_noise=False)
    custom = next(i for i, n in prompt.items() if n["class_type"] == "PsiSMCSamplerCustom")
    noise = next(i for i, n in prompt.items() if n["class_type"] == "RandomNoise")
    browser.js("(prompt) => app.loadApiJson(prompt, 'psi custom sampler chart test')", prompt)
    prompt_id = queue_from_page(browser, noise, 11, widget="noise_seed")
    assert prompt_id not in (None, "error"), server.log_tail()
    data = browser.js(f"(id) => ({EXT})('psi.live_chart').chartData(id)", custom)
    assert data["promptId"] == prompt_id
    assert [p["step"] for p in data["smc"]] == list(range(1, host_graphs.SMC_STEPS + 1))
    assert all(p["k"] == host_graphs.PARTICLES for p in data["smc"])
    assert our_errors(browser) == []


# --------------------------------------------------------------------------- box editor


@pytest.fixture()
def layout_node(browser):
    node_id = browser.js("""() => {
        app.graph.clear();
        const node = LiteGraph.createNode("PsiLayoutReward");
        node.pos = [100, 100];
        app.graph.add(node);
        node.widgets.find((w) => w.name === "width").value = 768;
        node.widgets.find((w) => w.name === "height").value = 512;
        node.setSize([420, 720]);
        return node.id;
    }""")
    yield node_id


def widget_boxes(browser, node_id) -> list[dict]:
    text = browser.js("(id) => app.graph.getNodeById(id).widgets.find((w) => w.name === 'boxes').value", node_id)
    return json.loads(text)


def canvas_rect(browser, node_id) -> dict:
    return browser.js(f"""(id) => {{ const r = ({EXT})("psi.box_editor").editorFor(id).canvas.getBoundingClientRect();
        return {{x: r.left, y: r.top, width: r.width, height: r.height}}; }}""", node_id)


def drag(browser, node_id, start, end):
    """Drag with the real mouse between normalised canvas points (the canvas is measured first: its size
    follows the node and the list of phrases)."""
    page, rect = browser.page, canvas_rect(browser, node_id)

    def to_screen(p):
        return rect["x"] + p[0] * rect["width"], rect["y"] + p[1] * rect["height"]

    page.mouse.move(*to_screen(start))
    page.mouse.down()
    for t in (0.3, 0.7, 1.0):
        page.mouse.move(*to_screen([start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])]))
    page.mouse.up()


def assert_boxes(actual: list[dict], expected: list[tuple[str, list[float]]], tol: float) -> None:
    assert [a["phrase"] for a in actual] == [e[0] for e in expected]
    for a, (_, box) in zip(actual, expected):
        assert a["box"] == pytest.approx(box, abs=tol), (actual, expected)


def test_box_editor_produces_the_reward_boxes(browser, layout_node, screenshot_dir):
    node_id = layout_node
    focus_node(browser, node_id)
    rect = canvas_rect(browser, node_id)
    assert rect["width"] / rect["height"] == pytest.approx(768 / 512, rel=0.02)  # the image's aspect ratio
    tol = 1.5 / min(rect["width"], rect["height"])  # a pixel and a half

    # the node's default boxes are shown: a cat (left) and a dog (right)
    initial = widget_boxes(browser, node_id)
    assert [b["phrase"] for b in initial] == ["a cat", "a dog"]
    cat, dog = initial[0]["box"], initial[1]["box"]

    page = browser.page
    drag(browser, node_id, (0.10, 0.05), (0.40, 0.25))  # draw
    boxes = widget_boxes(browser, node_id)
    assert_boxes(boxes, [("a cat", cat), ("a dog", dog), ("object", [0.10, 0.05, 0.40, 0.25])], tol)

    page.locator(".psi-box-editor-row input").nth(2).fill("a red balloon")  # its phrase
    drag(browser, node_id, (0.25, 0.15), (0.45, 0.15))  # move it right by 0.2
    drag(browser, node_id, (0.60, 0.25), (0.70, 0.28))  # resize by its bottom-right corner
    balloon = [0.30, 0.05, 0.70, 0.28]
    assert_boxes(widget_boxes(browser, node_id), [("a cat", cat), ("a dog", dog), ("a red balloon", balloon)], tol)

    drag(browser, node_id, (0.20, 0.60), (0.20, 0.60))  # click inside the cat: selects it
    page.keyboard.press("Delete")
    boxes = widget_boxes(browser, node_id)
    assert_boxes(boxes, [("a dog", dog), ("a red balloon", balloon)], tol)
    assert browser.js("(id) => app.graph.getNodeById(id) !== null", node_id)  # Delete removed the box, not the node

    # what the layout reward receives: graphToPrompt carries the widget text, which parses to these targets
    prompt_boxes = browser.js("async (id) => (await app.graphToPrompt()).output[id].inputs.boxes", node_id)
    assert json.loads(prompt_boxes) == boxes
    target = LayoutTarget.build([b["phrase"] for b in boxes], [b["box"] for b in boxes], units="normalized")
    assert target.phrases == ("a dog", "a red balloon")
    assert target.boxes.flatten().tolist() == pytest.approx(dog + balloon, abs=tol)

    clip_screenshot(browser, screenshot_dir / "box_editor.png", focus_node(browser, node_id))

    # a saved workflow reloads the boxes into the editor
    reloaded = browser.js(f"""async (id) => {{
        const workflow = JSON.parse(JSON.stringify(app.graph.serialize()));
        await app.loadGraphData(workflow);
        return ({EXT})("psi.box_editor").editorFor(id).boxes(); }}""", node_id)
    assert_boxes(reloaded, [("a dog", dog), ("a red balloon", balloon)], 1e-4)
    assert our_errors(browser) == []


def test_box_editor_api_and_pixel_units(browser, layout_node):
    node_id = layout_node
    result = browser.js(f"""(id) => {{
        const node = app.graph.getNodeById(id);
        const editor = ({EXT})("psi.box_editor").editorFor(id);
        editor.deleteBox(0);
        editor.deleteBox(0);
        node.widgets.find((w) => w.name === "units").value = "pixels";
        editor.addBox("a tree", [0.5, 0.25, 0.75, 1.2]);  // clamped into the image
        const pixels = node.widgets.find((w) => w.name === "boxes").value;
        node.widgets.find((w) => w.name === "boxes").value = '[{{"phrase": "a house", "box": [0, 0, 384, 256]}}]';
        editor.sync();
        return {{pixels, typed: editor.boxes()}};
    }}""", node_id)
    assert json.loads(result["pixels"]) == [{"phrase": "a tree", "box": [384, 128, 576, 512]}]
    assert result["typed"] == [{"phrase": "a house", "box": [0, 0, 0.5, 0.5]}]  # typed pixel JSON is read back
