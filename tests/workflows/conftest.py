"""Fixtures for the workflow tests: one real ComfyUI server and its real frontend in headless Chromium,
from the frontend tests' harness (tests/frontend/conftest.py: `Server`, `Browser`, `requirements`).

The server also gets empty placeholders for every model file and folder the workflows name, in its private
models folder, so that it lists them among the loaders' choices and validates everything else. Skipped with
one loud line where COMFYUI_PATH, Chromium or playwright is missing. This folder is put on sys.path so the
test module can import the helpers under --import-mode=importlib.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from workflow_testing import frontend_harness, load_workflows, write_placeholders  # noqa: E402


harness = frontend_harness()


def skip_line(reason: str) -> str:
    return (f"WORKFLOW TESTS SKIPPED ({reason}): set COMFYUI_PATH to a ComfyUI checkout (and install Chromium and "
            "playwright for the frontend checks) to run tests/workflows")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    _, reason = harness.requirements()
    if reason is not None:
        terminalreporter.write_line(skip_line(reason), red=True, bold=True)


@pytest.fixture(scope="session")
def workflows() -> dict[str, dict]:
    return load_workflows()


@pytest.fixture(scope="session")
def server(tmp_path_factory, workflows):
    root, python, reason = harness.host.host_location()
    if reason is not None:
        pytest.skip(skip_line(reason))
    work = tmp_path_factory.mktemp("comfy_workflows")
    write_placeholders(work / "base" / "models", workflows)
    yield from harness.host.run_server(harness.Server(root, python, work))


@pytest.fixture(scope="session")
def object_info(server) -> dict:
    return server.get("/object_info")


@pytest.fixture(scope="session")
def in_browser(server):
    """`in_browser(function)`: function(harness.Browser on a freshly opened frontend page), run with a playwright
    session of its own in a thread of its own (playwright's sync API refuses a thread whose event loop another
    session, e.g. the frontend tests', already holds); returns what the function returns."""
    found, reason = harness.requirements()
    if reason is not None:
        pytest.skip(skip_line(reason))

    def run(function):
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(_browse, found["chromium"], server, function).result()

    return run


def _browse(chromium_path: str, server, function):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=harness.CHROMIUM_FLAGS)
        try:
            page = chromium.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            session = harness.Browser(page, server)
            session.open()
            return function(session)
        finally:
            chromium.close()
