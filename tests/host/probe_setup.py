"""What the probe scripts (run with the host's python in the host's folder) share: importing
ComfyUI from a plain process, and loading a package folder under a fixed name."""

from __future__ import annotations

import importlib.util
import os
import sys


def import_host() -> None:
    """Import ComfyUI from a plain process (as main.py does: args parsing on, --cpu, extra_config before nodes)."""
    sys.path.insert(0, os.getcwd())
    sys.argv = [sys.argv[0], "--cpu"]
    import comfy.options
    comfy.options.enable_args_parsing()
    import utils.extra_config  # noqa: F401  (main.py imports it before nodes)


def load_package(name: str, folder: str):
    """The package at `folder` imported as `name` (the pack, the test fixtures)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, "__init__.py"),
                                                  submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def visualizer_and_fixtures(pack: str, fixtures: str):
    """(the pack's visualizer_node module, its Trace class, the fixtures' tiny module), ComfyUI imported first."""
    import_host()
    load_package("psi_sampler", pack)
    visualizer = importlib.import_module("psi_sampler.nodes.visualizer_node")
    trace_class = importlib.import_module("psi_sampler.psi_core.trace").Trace
    load_package("psi_test_fixtures", fixtures)
    return visualizer, trace_class, importlib.import_module("psi_test_fixtures.tiny")
