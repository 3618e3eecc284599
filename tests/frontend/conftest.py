"""Frontend tests: a real ComfyUI server on 127.0.0.1 and its real frontend in headless Chromium.

The server is the host tests' (tests/host/conftest.py: `COMFYUI_PATH`, `COMFYUI_PYTHON`,
this pack and the tiny-model fixture pack loaded through `--extra-model-paths-config`, all
files in a temporary base directory). Chromium comes from `PSI_CHROMIUM` (default `chromium`
on PATH or /usr/bin/chromium) and is driven by the `playwright` package (no browser
download). Without any of them every test here is skipped and one loud line says so.
One server and one browser serve the session.

Tests that take the `renderer` fixture run twice: with the classic LiteGraph canvas and with
Nodes 2.0 (Vue-rendered nodes, the frontend setting `Comfy.VueNodes.Enabled`), switched through
the frontend's settings API before the test builds its graph. A frontend that does not offer that
setting (none, or only a hidden experimental flag, as 1.27 has) skips the Nodes 2.0 run and says so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 860}
VUE_NODES_SETTING = "Comfy.VueNodes.Enabled"
RENDERERS = ("classic", "nodes2")


def _host_conftest():
    """tests/host/conftest.py as a module (its server class; it puts host_graphs on sys.path)."""
    spec = importlib.util.spec_from_file_location("psi_host_conftest_for_frontend", HERE.parent / "host" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


host = _host_conftest()

if str(HERE) not in sys.path:  # test modules import frontend_graphs (pytest runs with --import-mode=importlib)
    sys.path.insert(0, str(HERE))


def requirements() -> tuple[dict | None, str | None]:
    """({"root", "python", "chromium"}, None) or (None, why the frontend tests are skipped)."""
    root, python, reason = host.host_location()
    if reason is not None:
        return None, reason
    chromium = os.environ.get("PSI_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        return None, f"no Chromium at {chromium} (set PSI_CHROMIUM)"
    if importlib.util.find_spec("playwright") is None:
        return None, "the playwright package is not installed (pip install -r requirements-dev.txt)"
    return {"root": root, "python": python, "chromium": chromium}, None


def skip_line(reason: str) -> str:
    return (f"FRONTEND TESTS SKIPPED ({reason}): set COMFYUI_PATH to a ComfyUI checkout with its frontend and "
            "install Chromium and playwright to run tests/frontend")


def pytest_collection_modifyitems(config, items):
    _, reason = requirements()
    if reason is None:
        return
    marker = pytest.mark.skip(reason=skip_line(reason))
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(marker)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    _, reason = requirements()
    if reason is not None:
        terminalreporter.write_line(skip_line(reason), red=True, bold=True)


class Server(host.ComfyServer):
    """The host tests' server, plus what the frontend tests need."""

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def wait_ready(self) -> None:
        super().wait_ready()
        # no first-run template dialog over the screenshots
        request = urllib.request.Request(f"{self.url}/settings", data=json.dumps({"Comfy.TutorialCompleted": True})
                                         .encode(), headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(request, timeout=30).close()

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=30) as reply:
            return reply.read()

    def run_ok(self, prompt: dict, timeout: float = 120.0) -> dict:
        """Queue an API prompt, wait, return its history entry; the run must succeed."""
        entry = self.run(prompt, timeout)
        assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{self.log_tail()}"
        return entry


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    found, reason = requirements()
    if reason is not None:
        pytest.skip(skip_line(reason))
    comfy = Server(found["root"], found["python"], tmp_path_factory.mktemp("comfy_frontend"))
    yield from host.run_server(comfy, log_env="PSI_FRONTEND_LOG")


class Browser:
    """The ComfyUI page in headless Chromium; `js(script, arg)` evaluates in the page, where `app`
    and `api` are the frontend's objects. Console errors and page errors are collected."""

    def __init__(self, page, server: Server):
        self.page = page
        self.server = server
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text} @ {m.location}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e} {getattr(e, 'stack', '')}"))

    def open(self) -> None:
        started = time.time()
        self.page.goto(self.server.url + "/", wait_until="domcontentloaded", timeout=90_000)
        # the app, our extensions and the start-up workflow (loaded after the app is set up, behind the
        # workspace spinner: it would replace a graph that a test loaded before it)
        self.page.wait_for_function(
            "() => window.comfyAPI?.app?.app?.graph && window.comfyAPI.app.app.extensions?.length > 0 "
            "&& window.LiteGraph?.registered_node_types?.PsiSMCSampler "
            "&& window.comfyAPI.app.app.extensionManager?.spinner === false", timeout=90_000)
        self.page.evaluate("() => { window.app = window.comfyAPI.app.app; window.api = window.comfyAPI.api.api; }")
        self.load_seconds = time.time() - started

    def js(self, script: str, arg=None):
        return self.page.evaluate(script, arg)

    def frontend_version(self) -> str:
        return self.js("() => window.__COMFYUI_FRONTEND_VERSION__ ?? 'unknown'")

    def no_vue_nodes(self) -> str | None:
        """Why this frontend has no Nodes 2.0 to test, or None: the setting must be defined and offered
        in the settings (1.27 defines it as a hidden flag for a prototype renderer)."""
        setting = self.js("""(id) => { const s = app.ui?.settings?.settingsLookup?.[id];
            return s === undefined ? null : {type: s.type ?? null, name: s.name ?? null}; }""", VUE_NODES_SETTING)
        version = self.frontend_version()
        if setting is None:
            return f"frontend {version} has no {VUE_NODES_SETTING} setting: no Nodes 2.0 (Vue-rendered nodes)"
        if setting["type"] == "hidden":
            return (f"frontend {version} has {VUE_NODES_SETTING} only as a hidden setting ({setting['name']!r}): "
                    "a prototype, not the Nodes 2.0 that users can turn on")
        return None

    def set_renderer(self, renderer: str) -> None:
        """Switch Nodes 2.0 on ("nodes2") or off ("classic") with the settings API, on an empty graph."""
        on = renderer == "nodes2"
        self.js("""async ([id, on]) => {
            app.graph.clear();
            if (app.extensionManager.setting.get(id) !== on) await app.extensionManager.setting.set(id, on);
            for (let i = 0; i < 3; i++) await new Promise((r) => requestAnimationFrame(r));
        }""", [VUE_NODES_SETTING, on])
        assert self.js("(id) => app.extensionManager.setting.get(id)", VUE_NODES_SETTING) is on


@pytest.fixture(scope="session")
def browser(server):
    from playwright.sync_api import sync_playwright

    found, _ = requirements()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=found["chromium"], args=CHROMIUM_FLAGS)
        try:
            page = chromium.new_page(viewport=VIEWPORT)
            page.set_default_timeout(60_000)
            session = Browser(page, server)
            session.open()
            yield session
        finally:
            chromium.close()


@pytest.fixture(params=RENDERERS)
def renderer(request, browser) -> str:
    """"classic" or "nodes2": the renderer of the nodes the test builds (the graph is cleared)."""
    name = request.param
    missing = browser.no_vue_nodes()
    if missing is not None:
        if name == "nodes2":
            pytest.skip(missing)
        browser.js("() => app.graph.clear()")  # classic, as it always is there
        return name
    browser.set_renderer(name)
    return name


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """Where screenshots and rendered images go: PSI_SCREENSHOTS or /tmp/psi_frontend_screenshots."""
    return Path(os.environ.get("PSI_SCREENSHOTS") or "/tmp/psi_frontend_screenshots")
