"""Load the repository as the package `psi_sampler` (the name its modules see in ComfyUI and in the
tests), so a script in bench/ imports the core as `psi_sampler.psi_core` and the rewards as
`psi_sampler.rewards`, whatever the checkout's folder is called."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_pack() -> None:
    if "psi_sampler" in sys.modules:
        return
    sys.path.insert(0, str(REPO))
    spec = importlib.util.spec_from_file_location(
        "psi_sampler", str(REPO / "__init__.py"), submodule_search_locations=[str(REPO)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["psi_sampler"] = pack
    spec.loader.exec_module(pack)
