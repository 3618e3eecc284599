"""Packaging: pyproject.toml for the Comfy registry, LICENSE, requirements that leave the host untouched, and a
help page for every node the pack registers (served where the frontend looks for it)."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

import pytest
from make_workflows import ICON, REPO
from workflow_testing import frontend_harness

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
DOCS = REPO / "js" / "docs"
HOST_PACKAGES = {"torch", "torchvision", "torchaudio", "xformers"}


def requirement_lines() -> list[str]:
    lines = (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def package_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()


def test_project_table_is_what_the_registry_reads():
    project = PYPROJECT["project"]
    assert project["name"] == "psi-sampler" and "comfyui" not in project["name"].lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["description"] and project["requires-python"].startswith(">=")
    assert (REPO / project["license"]["file"]).is_file()
    assert project["urls"]["Repository"].startswith("https://")


def test_dependencies_mirror_requirements_and_never_touch_torch():
    dependencies = PYPROJECT["project"]["dependencies"]
    assert dependencies == requirement_lines()
    assert not {package_name(d) for d in dependencies} & HOST_PACKAGES
    assert all(not re.search(r"==|<", d) for d in dependencies), "no exact or upper pins (they could downgrade)"


def test_groundingdino_py_is_an_optional_extra_only():
    """The original Grounding DINO needs transformers < 5: an extra, never a default requirement."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {package_name(d) for d in extras["groundingdino-py"]} == {"groundingdino-py", "transformers"}
    assert "groundingdino-py" not in {package_name(d) for d in requirement_lines()}


def test_tool_comfy_table_and_its_icon():
    from PIL import Image

    comfy = PYPROJECT["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    assert comfy["Icon"].endswith("/" + ICON.relative_to(REPO).as_posix())
    with Image.open(ICON) as icon:
        assert icon.width == icon.height <= 400


def test_license_is_mit():
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text


@pytest.fixture(scope="module")
def host_python():
    """(ComfyUI dir, its python) from the host tests' settings (COMFYUI_PATH, COMFYUI_PYTHON)."""
    root, python, reason = frontend_harness().host.host_location()
    if reason is not None:
        pytest.skip(f"{reason}: host packaging checks were SKIPPED")
    return root, python


def test_comfyui_reads_the_pyproject(host_python):
    root, python = host_python
    script = ("import json, sys; from comfy_config import config_parser; c = config_parser.extract_node_configuration("
              "sys.argv[1]); print(json.dumps([c.project.name, c.project.version, c.project.urls.repository, "
              "c.tool_comfy.publisher_id, c.tool_comfy.display_name, c.tool_comfy.icon, c.tool_comfy.web]))")
    done = subprocess.run([str(python), "-c", script, str(REPO)], cwd=root, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    name, version, repository, publisher, display, icon, web = json.loads(done.stdout.strip().splitlines()[-1])
    comfy = PYPROJECT["tool"]["comfy"]
    assert (name, version, repository) == ("psi-sampler", PYPROJECT["project"]["version"],
                                           PYPROJECT["project"]["urls"]["Repository"])
    assert (publisher, display, icon) == (comfy["PublisherId"], comfy["DisplayName"], comfy["Icon"])
    assert web is None  # WEB_DIRECTORY of __init__.py decides where the js (and the help pages) are served


def test_requirements_install_nothing_into_the_host_environment(host_python):
    """The resolver, offline against ComfyUI's own environment: every requirement is already satisfied by
    what ComfyUI installed, so ComfyUI-Manager's `pip install -r requirements.txt` changes nothing."""
    _, python = host_python
    done = subprocess.run([str(python), "-m", "pip", "install", "--dry-run", "--no-index", "--quiet", "--report",
                           "-", "-r", str(REPO / "requirements.txt")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["install"] == []


def pack_nodes(object_info: dict) -> dict[str, dict]:
    return {name: info for name, info in object_info.items() if info.get("python_module") == "custom_nodes.psi_sampler"}


def test_every_pack_node_has_a_help_page_naming_its_inputs_and_outputs(object_info):
    nodes = pack_nodes(object_info)
    assert {"PsiInitialSampler", "PsiSMCSampler", "PsiSMCSamplerCustom", "PsiImageStatsReward",
            "PsiParticleVisualizer"} <= set(nodes)
    assert {p.stem for p in DOCS.glob("*.md")} == set(nodes), "one page per registered node, no stale pages"
    for name, info in nodes.items():
        page = (DOCS / f"{name}.md").read_text(encoding="utf-8")
        assert page.startswith(f"# {info['display_name']}\n"), name
        names = [n for section in ("required", "optional") for n in info["input_order"].get(section, [])]
        names += list(info["output_name"])
        missing = [n for n in names if f"`{n}`" not in page and not _in_range(n, page)]
        assert not missing, f"{name}.md does not mention {missing}"


def _in_range(name: str, page: str) -> bool:
    """`weight_1` … `weight_4` style ranges count for the names between."""
    match = re.fullmatch(r"(.*_)(\d+)", name)
    if not match:
        return False
    for low, high in re.findall(rf"`{re.escape(match.group(1))}(\d+)` … `{re.escape(match.group(1))}(\d+)`", page):
        if int(low) <= int(match.group(2)) <= int(high):
            return True
    return False


def test_help_pages_are_served_where_the_frontend_fetches_them(server, object_info):
    for name in pack_nodes(object_info):
        body = server.get_bytes(f"/extensions/psi_sampler/docs/{name}.md").decode("utf-8")
        assert body == (DOCS / f"{name}.md").read_text(encoding="utf-8")
