"""The pack's frontend extensions (js/) in the real ComfyUI frontend, in headless Chromium, with the
classic canvas and with Nodes 2.0 (Vue-rendered nodes) wherever the frontend has it (the `renderer`
fixture, see conftest).

- The extensions load: both are registered in app.extensions, their files are served,
  no console or page error mentions them, nodes get their widgets (shown inside the node in
  either renderer), removal cleans up.
- The live chart receives psi.* events during a real run queued from the page (tiny
  random-weight model): one point per MCMC iteration and per SMC step, cleared on a new run,
  and draws them: the canvas shows each series' colour where the chart says it drew its points.
  Extra numbers per step (sigma today, any field a sampler adds) get a series of their own.
- The box editor: boxes drawn, renamed, moved, resized and deleted with real mouse and
  keyboard input end up in the `boxes` widget as the normalised JSON the layout reward
  parses, graphToPrompt() carries it, and a saved workflow reloads it. Edits of the boxes,
  width and units widgets made through the widgets as a user makes them (typing, the number
  widget's arrow, the combo) show in the editor at once, without any redraw of the graph.
Screenshots of the chart and the editor go to the screenshot folder (see conftest).
"""

from __future__ import annotations

import json

import frontend_graphs as graphs
import host_graphs
import pytest

from psi_sampler.rewards.targets import LayoutTarget

OUR_FILES = ("psi_common.js", "psi_live_chart.js", "psi_box_editor.js")
EXTENSIONS = ("psi.live_chart", "psi.box_editor")

EXT = "(name) => app.extensions.find((e) => e.name === name)"

# share of the pixels of a rectangle of a canvas (CSS pixels) that have exactly the colour `hex`, opaque
COLOR_SHARE = """([canvas, rect, hex]) => {
    const ratio = canvas.width / parseFloat(canvas.style.width);
    const [x, y, w, h] = rect.map((v) => Math.round(v * ratio));
    const data = canvas.getContext("2d").getImageData(x, y, Math.max(1, w), Math.max(1, h)).data;
    const want = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
    let hits = 0;
    for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] === 255 && want.every((v, c) => Math.abs(data[i + c] - v) <= 2)) hits += 1;
    }
    return hits / (data.length / 4);
}"""


def our_errors(browser) -> list[str]:
    return [e for e in browser.errors if "psi_" in e or "/extensions/psi_sampler" in e]


def focus_node(browser, node_id, margin=(110, 120)) -> dict:
    """Scroll the graph canvas to put node `node_id` at the top left (scale 1); returns its screen box
    (the Vue-rendered node's own box with Nodes 2.0)."""
    return browser.js("""async ([id, margin]) => {
        const node = app.graph.getNodeById(id);
        app.canvas.ds.scale = 1;
        app.canvas.ds.offset = [-node.pos[0] + margin[0], -node.pos[1] + margin[1]];
        app.canvas.setDirty(true, true);
        for (let i = 0; i < 4; i++) await new Promise((r) => requestAnimationFrame(r));
        const vue = document.querySelector(`[data-node-id="${id}"]`);
        if (vue) {
            const r = vue.getBoundingClientRect();
            return {x: r.left, y: r.top, width: r.width, height: r.height};
        }
        const rect = app.canvas.canvas.getBoundingClientRect();
        return {x: rect.left + margin[0], y: rect.top + margin[1] - 30, width: node.size[0],
                height: node.size[1] + 30};
    }""", [node_id, list(margin)])


def screenshot_node(browser, node_id, path) -> None:
    """A screenshot of node `node_id`; of a node taller than the page, its lower part (the chart and the
    editor are at the bottom of their nodes; the page's menus stay out of the picture)."""
    margin = (110, 120)
    box = focus_node(browser, node_id, margin)
    room = browser.page.viewport_size["height"] - 16
    if box["y"] + box["height"] > room:
        box = focus_node(browser, node_id, (margin[0], margin[1] - (box["y"] + box["height"] - room)))
        box = {**box, "y": margin[1], "height": room - margin[1]}
    clip_screenshot(browser, path, box)


def clip_screenshot(browser, path, box):
    path.parent.mkdir(parents=True, exist_ok=True)
    pad = 12
    browser.page.screenshot(path=str(path), clip={"x": max(box["x"] - pad, 0), "y": max(box["y"] - pad, 0),
                                                  "width": box["width"] + 2 * pad, "height": box["height"] + 2 * pad})


def wait_shown(browser, renderer, node_id, prop) -> None:
    """Wait until the DOM widget `node[prop].element` is on the page, with a size, inside the node's own
    element when Vue renders it (Nodes 2.0 moves the element into the node)."""
    browser.page.wait_for_function("""([id, prop, vue]) => {
        const item = app.graph.getNodeById(id)?.[prop];
        if (!item?.element?.isConnected || item.element.getBoundingClientRect().height < 40) return false;
        return !vue || !!item.element.closest(`[data-node-id="${id}"]`);
    }""", arg=[node_id, prop, renderer == "nodes2"])


def frames(browser, count=3) -> None:
    browser.js("async (n) => { for (let i = 0; i < n; i++) await new Promise((r) => requestAnimationFrame(r)); }",
               count)


# --------------------------------------------------------------------------- loading


def test_extensions_load(server, browser, renderer):
    names = browser.js("() => app.extensions.map((e) => e.name)")
    for name in EXTENSIONS:
        assert name in names
    served = server.get("/extensions")
    for file in OUR_FILES:
        assert f"/extensions/psi_sampler/{file}" in served
    assert our_errors(browser) == []

    ids = browser.js("""async () => {
        const ids = {};
        for (const type of ["PsiInitialSampler", "PsiSMCSampler", "PsiSMCSamplerCustom", "PsiLayoutReward"]) {
            const node = LiteGraph.createNode(type);
            const i = Object.keys(ids).length;
            node.pos = [100 + 600 * (i % 2), 100 + 800 * Math.floor(i / 2)];
            app.graph.add(node);
            ids[type] = node.id;
        }
        app.canvas.ds.scale = 0.5;  // all four in view
        app.canvas.ds.offset = [0, 0];
        app.canvas.setDirty(true, true);
        return ids;
    }""")
    for node_type, node_id in ids.items():  # each node shows its chart or editor, in either renderer
        wait_shown(browser, renderer, node_id, "psiBoxEditor" if node_type == "PsiLayoutReward" else "psiLiveChart")
    created = browser.js("""(ids) => {
        const out = {};
        for (const [type, id] of Object.entries(ids)) {
            const node = app.graph.getNodeById(id);
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
    }""", ids)
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


def chart_drawn(browser, node_id) -> dict:
    """What the chart of `node_id` drew last, after the pending frame."""
    frames(browser)
    return browser.js(f"(id) => ({EXT})('psi.live_chart').chartDrawn(id)", node_id)


def assert_series_shown(browser, node_id, drawn, name, count) -> None:
    """Series `name` has `count` points, and the chart's canvas shows its colour at each of them (the
    3×3 point marks; series drawn later may cover an earlier one, so pass the top one of a panel)."""
    series = drawn["series"][name]
    assert len(series["points"]) == count, (name, series)
    handle = browser.page.evaluate_handle("(id) => app.graph.getNodeById(id).psiLiveChart.canvas", node_id)
    for x, y in series["points"]:
        share = browser.page.evaluate(COLOR_SHARE, [handle, [x - 1, y - 1, 2, 2], series["color"]])
        assert share >= 0.25, (name, x, y, series["color"], share)


def test_live_chart_receives_events(server, browser, renderer, screenshot_dir):
    particles, steps = 4, 4
    prompt, ids = graphs.live_run(particles=particles, steps=steps)
    browser.js("(prompt) => app.loadApiJson(prompt, 'psi live chart test')", prompt)
    # fixed seeds: the seed widgets would otherwise change after queueing
    browser.js("""(ids) => { for (const id of ids) {
        const w = app.graph.getNodeById(id).widgets.find((x) => x.name === "control_after_generate");
        if (w) w.value = "fixed"; } }""", [ids["initial"], ids["smc"]])
    focus_node(browser, ids["smc"])
    wait_shown(browser, renderer, ids["smc"], "psiLiveChart")

    results = []
    for seed in (1, 2) if renderer == "classic" else (3, 4):  # a prompt run before would come from the cache
        prompt_id = queue_from_page(browser, ids["initial"], seed)
        assert prompt_id not in (None, "error"), server.log_tail()
        data = browser.js(f"""(ids) => {{ const ext = ({EXT})("psi.live_chart");
            return {{initial: ext.chartData(ids.initial), smc: ext.chartData(ids.smc)}}; }}""", ids)
        results.append((prompt_id, data))
        mcmc = data["initial"]["mcmc"]
        assert [p["iteration"] for p in mcmc] == [1, 2, 3]  # one point per MCMC iteration, this run only
        assert data["initial"]["promptId"] == prompt_id
        assert all(0.0 <= p["acceptance"] <= 1.0 and p["mean"] <= p["max"] + 1e-12 for p in mcmc)
        assert all(p["extra"]["step_size"] > 0 for p in mcmc)  # the events' other number per iteration
        smc = data["smc"]["smc"]
        assert [p["step"] for p in smc] == list(range(1, steps + 1))  # cleared on the new run, not appended
        assert data["smc"]["promptId"] == prompt_id
        for point in smc:
            assert point["k"] == particles and point["total"] == steps
            assert 0.0 < point["ess"] <= particles + 1e-9
            assert point["mean"] is not None and point["mean"] <= point["max"] + 1e-12
            # the step's numbers: σ, the tempering λ and the share of clipped shifts; lists (weights), dicts
            # (nfe), flags and sigma_next are not drawn
            assert set(point["extra"]) == {"sigma", "lambda", "clipped"}
            assert 0.0 <= point["extra"]["clipped"] <= 1.0
        sigmas = [p["extra"]["sigma"] for p in smc]
        assert sigmas == sorted(sigmas, reverse=True) and sigmas[0] > sigmas[-1]
        lambdas = [p["extra"]["lambda"] for p in smc]
        assert lambdas == sorted(lambdas) and 0.0 <= lambdas[0] and lambdas[-1] == 1.0  # rises to exactly 1
    assert results[0][0] != results[1][0]
    assert results[0][1]["smc"]["smc"] != results[1][1]["smc"]["smc"]  # another seed, other numbers

    # drawn: ESS on top of the first panel, the mean reward on top of the second, sigma in the third
    drawn = chart_drawn(browser, ids["smc"])
    assert drawn["size"][0] > 200 and drawn["size"][1] > 150
    for name in ("ess", "mean", "extra:sigma"):  # λ and the clipped share (checked as data above) can lie flat under each other
        assert_series_shown(browser, ids["smc"], drawn, name, steps)
    ess_y = [y for _, y in drawn["series"]["ess"]["points"]]
    top = drawn["panels"][0]["box"]
    for y, point in zip(ess_y, results[1][1]["smc"]["smc"]):  # ESS / K on the first panel's 0–1 axis
        assert y == pytest.approx(top["bottom"] - point["ess"] / particles * (top["bottom"] - top["top"]), abs=0.01)
    sigma_y = [y for _, y in drawn["series"]["extra:sigma"]["points"]]
    assert sigma_y == sorted(sigma_y)  # falling sigma, lower on the canvas at each step
    focus_node(browser, ids["initial"])
    wait_shown(browser, renderer, ids["initial"], "psiLiveChart")
    drawn_initial = chart_drawn(browser, ids["initial"])
    assert_series_shown(browser, ids["initial"], drawn_initial, "acceptance", 3)
    assert len(drawn_initial["series"]["extra:step_size"]["points"]) == 3

    status = browser.js("(id) => app.graph.getNodeById(id).psiLiveChart.status.textContent", ids["smc"])
    assert status.startswith(f"SMC {steps}/{steps}")
    suffix = "" if renderer == "classic" else "_nodes2"
    screenshot_node(browser, ids["smc"], screenshot_dir / f"live_chart_smc{suffix}.png")
    screenshot_node(browser, ids["initial"], screenshot_dir / f"live_chart_initial{suffix}.png")
    assert our_errors(browser) == []


def test_live_chart_draws_extra_series(browser, renderer):
    """A number per step that the chart does not know (here `tempering_level`, a test-only name) is
    drawn as a series of its own, scaled to its own range; lists, objects and flags are not."""
    node_id = browser.js("""() => {
        const node = LiteGraph.createNode("PsiSMCSampler");
        node.pos = [100, 100];
        app.graph.add(node);
        return node.id;
    }""")
    focus_node(browser, node_id)
    wait_shown(browser, renderer, node_id, "psiLiveChart")
    steps = 5
    levels = [0.0, 0.1, 0.3, 0.6, 1.0]
    browser.js("""([node, levels]) => {
        const send = (type, detail) => api.dispatchCustomEvent
            ? api.dispatchCustomEvent(type, detail) : api.dispatchEvent(new CustomEvent(type, {detail}));
        send("execution_start", {prompt_id: "p-extra"});
        levels.forEach((level, i) => send("psi.smc_step", {
            node: String(node), prompt_id: "p-extra", step: i + 1, total: levels.length, sigma: 10 - 2 * i,
            sigma_next: 8 - 2 * i, ess: 3 - 0.5 * i, ess_before: 3 - 0.5 * i, resampled: i === 2,
            num_particles: 4, reward_mean: 0.1 * i, reward_max: 0.2 * i, weights: [0.25, 0.25, 0.25, 0.25],
            nfe: {model: i}, tempering_level: level, note: "not a number"}));
    }""", [node_id, levels])
    data = browser.js(f"(id) => ({EXT})('psi.live_chart').chartData(id)", node_id)
    assert [p["extra"] for p in data["smc"]] == [{"sigma": 10 - 2 * i, "tempering_level": v}
                                                 for i, v in enumerate(levels)]
    drawn = chart_drawn(browser, node_id)
    assert sorted(n for n in drawn["series"] if n.startswith("extra:")) == ["extra:sigma", "extra:tempering_level"]
    assert_series_shown(browser, node_id, drawn, "extra:tempering_level", steps)
    third = drawn["panels"][2]["box"]
    points = drawn["series"]["extra:tempering_level"]["points"]
    for (x, y), level in zip(points, levels):  # scaled to its own range [0, 1] in the third panel
        assert y == pytest.approx(third["bottom"] - level * (third["bottom"] - third["top"]), abs=0.01)
    assert [x for x, _ in points] == sorted(x for x, _ in points)
    assert our_errors(browser) == []


def test_live_chart_on_custom_sampler(server, browser, renderer):
    """SamplerCustomAdvanced sends the events; the chart of the PsiSMCSamplerCustom linked to it gets them."""
    prompt, _ = host_graphs.custom_advanced("sd15", psi_noise=False)
    custom = next(i for i, n in prompt.items() if n["class_type"] == "PsiSMCSamplerCustom")
    noise = next(i for i, n in prompt.items() if n["class_type"] == "RandomNoise")
    browser.js("(prompt) => app.loadApiJson(prompt, 'psi custom sampler chart test')", prompt)
    seed = 11 if renderer == "classic" else 12  # a prompt run before would come from the cache, without events
    prompt_id = queue_from_page(browser, noise, seed, widget="noise_seed")
    assert prompt_id not in (None, "error"), server.log_tail()
    data = browser.js(f"(id) => ({EXT})('psi.live_chart').chartData(id)", custom)
    assert data["promptId"] == prompt_id
    assert [p["step"] for p in data["smc"]] == list(range(1, host_graphs.SMC_STEPS + 1))
    assert all(p["k"] == host_graphs.PARTICLES for p in data["smc"])
    focus_node(browser, custom)
    wait_shown(browser, renderer, custom, "psiLiveChart")
    assert_series_shown(browser, custom, chart_drawn(browser, custom), "ess", host_graphs.SMC_STEPS)
    assert our_errors(browser) == []


# --------------------------------------------------------------------------- box editor


@pytest.fixture()
def layout_node(browser, renderer):
    node_id = browser.js("""() => {
        app.graph.clear();
        const node = LiteGraph.createNode("PsiLayoutReward");
        node.pos = [100, 100];
        const defaults = node.widgets.map((w) => w.value);
        app.graph.add(node);
        // a fresh node: newer frontends hand a node the values they kept for its id (1 again after clear())
        node.widgets.forEach((w, i) => { w.value = defaults[i]; });
        node.widgets.find((w) => w.name === "width").value = 768;
        node.widgets.find((w) => w.name === "height").value = 512;
        node.psiBoxEditor.sync();
        node.setSize([420, 720]);
        return node.id;
    }""")
    focus_node(browser, node_id)
    wait_shown(browser, renderer, node_id, "psiBoxEditor")
    yield node_id


def widget_value(browser, node_id, name):
    return browser.js("([id, name]) => app.graph.getNodeById(id).widgets.find((w) => w.name === name).value",
                      [node_id, name])


def widget_boxes(browser, node_id) -> list[dict]:
    return json.loads(widget_value(browser, node_id, "boxes"))


def editor_state(browser, node_id) -> dict:
    """The editor's boxes and what it drew last."""
    return browser.js(f"""(id) => {{ const editor = ({EXT})("psi.box_editor").editorFor(id);
        return {{boxes: editor.boxes(), drawn: editor.drawn()}}; }}""", node_id)


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


def assert_labels_shown(browser, node_id, drawn) -> None:
    """Each drawn box's phrase label (a filled tab in the box's colour) is on the editor's canvas."""
    handle = browser.page.evaluate_handle("(id) => app.graph.getNodeById(id).psiBoxEditor.canvas", node_id)
    for box in drawn["boxes"]:
        x, y = box["rect"][:2]
        share = browser.page.evaluate(COLOR_SHARE, [handle, [x + 1, y + 1, 14, 12], box["color"]])
        assert share >= 0.3, (box, share)


def test_box_editor_produces_the_reward_boxes(browser, renderer, layout_node, screenshot_dir):
    node_id = layout_node
    rect = canvas_rect(browser, node_id)
    assert rect["width"] / rect["height"] == pytest.approx(768 / 512, rel=0.02)  # the image's aspect ratio
    tol = 1.5 / min(rect["width"], rect["height"])  # a pixel and a half

    # the node's default boxes are shown: a cat (left) and a dog (right)
    initial = widget_boxes(browser, node_id)
    assert [b["phrase"] for b in initial] == ["a cat", "a dog"]
    cat, dog = initial[0]["box"], initial[1]["box"]
    assert_labels_shown(browser, node_id, editor_state(browser, node_id)["drawn"])

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
    drawn = editor_state(browser, node_id)["drawn"]
    assert [b["phrase"] for b in drawn["boxes"]] == ["a dog", "a red balloon"]
    assert_labels_shown(browser, node_id, drawn)

    # what the layout reward receives: graphToPrompt carries the widget text, which parses to these targets
    prompt_boxes = browser.js("async (id) => (await app.graphToPrompt()).output[id].inputs.boxes", node_id)
    assert json.loads(prompt_boxes) == boxes
    target = LayoutTarget.build([b["phrase"] for b in boxes], [b["box"] for b in boxes], units="normalized")
    assert target.phrases == ("a dog", "a red balloon")
    assert target.boxes.flatten().tolist() == pytest.approx(dog + balloon, abs=tol)

    suffix = "" if renderer == "classic" else "_nodes2"
    screenshot_node(browser, node_id, screenshot_dir / f"box_editor{suffix}.png")

    # a saved workflow reloads the boxes into the editor
    reloaded = browser.js(f"""async (id) => {{
        const workflow = JSON.parse(JSON.stringify(app.graph.serialize()));
        await app.loadGraphData(workflow);
        return ({EXT})("psi.box_editor").editorFor(id).boxes(); }}""", node_id)
    assert_boxes(reloaded, [("a dog", dog), ("a red balloon", balloon)], 1e-4)
    assert our_errors(browser) == []


# ---- edits of the widgets, made as a user makes them in each renderer


def type_boxes(browser, renderer, node_id, text) -> None:
    """Type `text` into the `boxes` text box (its textarea: the widget's own, or the Vue node's)."""
    if renderer == "nodes2":
        browser.page.locator(f'[data-node-id="{node_id}"] textarea').fill(text)
    else:
        browser.page.evaluate_handle(
            "(id) => app.graph.getNodeById(id).widgets.find((w) => w.name === 'boxes').element", node_id).fill(text)


def classic_widget_point(browser, node_id, name, x_from_right=None) -> tuple[float, float]:
    """Screen point on the canvas-drawn widget `name` (the node was put at the top left by focus_node):
    `x_from_right` pixels from the node's right edge, or the widget's middle."""
    box = browser.js("""([id, name]) => {
        const node = app.graph.getNodeById(id);
        const widget = node.widgets.find((w) => w.name === name);
        const scale = app.canvas.ds.scale, offset = app.canvas.ds.offset;
        const rect = app.canvas.canvas.getBoundingClientRect();
        const y = widget.last_y ?? widget.y;
        return {left: rect.left + (node.pos[0] + offset[0]) * scale, top: rect.top + (node.pos[1] + y + offset[1]) * scale,
                width: node.size[0] * scale, height: LiteGraph.NODE_WIDGET_HEIGHT * scale};
    }""", [node_id, name])
    x = box["left"] + (box["width"] - x_from_right if x_from_right is not None else box["width"] / 2)
    return x, box["top"] + box["height"] / 2


def click_increment(browser, renderer, node_id, name) -> None:
    """One click on the number widget's increment arrow (+ button with Nodes 2.0)."""
    if renderer == "nodes2":
        browser.page.locator(f'[data-node-id="{node_id}"] [aria-label="{name}"] [data-testid="increment"]').click()
    else:
        browser.page.mouse.click(*classic_widget_point(browser, node_id, name, x_from_right=25))


def choose_next_option(browser, renderer, node_id, name, option) -> None:
    """Pick `option` in the combo widget `name` (the Vue select, or the classic combo's right arrow)."""
    if renderer == "nodes2":
        page = browser.page
        page.locator(f'[data-node-id="{node_id}"] [role="combobox"][aria-label="{name}"]').click()
        page.get_by_role("option", name=option, exact=True).click()
    else:
        browser.page.mouse.click(*classic_widget_point(browser, node_id, name, x_from_right=25))


def test_box_editor_follows_widget_edits(browser, renderer, layout_node, screenshot_dir):
    node_id = layout_node
    frames(browser)
    assert editor_state(browser, node_id)["drawn"]["label"] == "768 × 512"

    # typed text: the editor shows the typed boxes
    type_boxes(browser, renderer, node_id, '[{"phrase": "a house", "box": [0.1, 0.2, 0.5, 0.9]}]')
    state = editor_state(browser, node_id)
    assert state["boxes"] == [{"phrase": "a house", "box": [0.1, 0.2, 0.5, 0.9]}]
    assert [b["phrase"] for b in state["drawn"]["boxes"]] == ["a house"]
    w, h = state["drawn"]["size"]
    assert state["drawn"]["boxes"][0]["rect"] == pytest.approx([0.1 * w, 0.2 * h, 0.4 * w, 0.7 * h], abs=0.01)
    assert_labels_shown(browser, node_id, state["drawn"])
    assert browser.page.locator(".psi-box-editor-row input").nth(0).input_value() == "a house"

    # the width's arrow: the canvas takes the new aspect ratio and says the new size
    before = canvas_rect(browser, node_id)
    click_increment(browser, renderer, node_id, "width")
    width = widget_value(browser, node_id, "width")
    assert width > 768
    frames(browser)
    state = editor_state(browser, node_id)
    assert state["drawn"]["label"] == f"{width} × 512"
    after = canvas_rect(browser, node_id)
    assert after["width"] / after["height"] == pytest.approx(width / 512, rel=0.01)
    assert after["width"] / after["height"] > before["width"] / before["height"]
    assert state["boxes"] == [{"phrase": "a house", "box": [0.1, 0.2, 0.5, 0.9]}]  # normalised: they stay

    # units: the same text read as pixels of width × 512
    type_boxes(browser, renderer, node_id, f'[{{"phrase": "a house", "box": [0, 0, {width // 2}, 256]}}]')
    assert editor_state(browser, node_id)["boxes"] == [{"phrase": "a house", "box": [0, 0, 1, 1]}]  # clamped
    choose_next_option(browser, renderer, node_id, "units", "pixels")
    assert widget_value(browser, node_id, "units") == "pixels"
    state = editor_state(browser, node_id)
    assert_boxes(state["boxes"], [("a house", [0, 0, (width // 2) / width, 0.5])], 1e-9)
    assert_labels_shown(browser, node_id, state["drawn"])

    # and the editor's own edit goes back into the widget, in pixels, shown in its text box
    drag(browser, node_id, (0.75, 0.75), (0.95, 0.95))
    boxes = widget_boxes(browser, node_id)
    assert boxes[0] == {"phrase": "a house", "box": [0, 0, width // 2, 256]}
    assert boxes[1]["phrase"] == "object"
    assert boxes[1]["box"] == pytest.approx([0.75 * width, 384, 0.95 * width, 486.4], abs=2)
    shown = (browser.page.locator(f'[data-node-id="{node_id}"] textarea').input_value() if renderer == "nodes2" else
             browser.js("(id) => app.graph.getNodeById(id).widgets.find((w) => w.name === 'boxes').element.value",
                        node_id))
    assert json.loads(shown) == boxes
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
