"""Test setup: make the pack importable as the package `psi_sampler`.

ComfyUI imports the pack by its folder name; the folder name of a checkout is
arbitrary, so tests load the repository root under a fixed name. Tests import the
core only as `psi_sampler.psi_core`, the name the pack's own modules see, so classes
agree across them (isinstance); the repository root is on sys.path for tools run as
`python -m psi_core.toy`.
"""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if "psi_sampler" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "psi_sampler", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["psi_sampler"] = _module
    _spec.loader.exec_module(_module)

SHARED_DATA = ROOT.parent / "shared" / "data" / "psi_official"
