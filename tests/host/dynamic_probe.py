"""The host package's choice of gradient patcher against ComfyUI's own dynamic-VRAM class.

Run by test_host_dynamic.py with the host's python in the host's folder:
    python dynamic_probe.py PACK_DIR FIXTURE_DIR
Prints one JSON line.

On a CPU, `ModelPatcherDynamic.__init__` cannot run (comfy-aimdo's native library
is not loaded, so `HostBuffer` fails) and its `__new__` hands out a classic
patcher for a CPU load device. The probe therefore makes a real
`ModelPatcherDynamic` object for a (never used) CUDA load device and initialises
it as a classic patcher plus the one attribute the dynamic `__init__` sets that
`get_non_dynamic_delegate` reads. Everything after that is ComfyUI's code:
`is_dynamic()`, `get_non_dynamic_delegate()`, `clone(disable_dynamic=True)` and
the loader factory in `cached_patcher_init` (here the tiny FLUX fixture). Nothing
is loaded to a device. On hosts without the class (0.3.64) the probe reports the
bridge's choice for a classic patcher only.
"""

from __future__ import annotations

import importlib
import json
import sys

from probe_setup import import_host, load_package


def main() -> None:
    pack, fixtures = sys.argv[1:3]
    import_host()
    import torch

    import comfy.model_patcher

    load_package("psi_sampler", pack)
    bridge = importlib.import_module("psi_sampler.comfy_host.dynamic_vram")
    load_package("psi_test_fixtures", fixtures)
    tiny = importlib.import_module("psi_test_fixtures.tiny")

    classic = tiny.build("flux", 0)[0]
    result = {"classic_is_dynamic": bridge.is_dynamic(classic),
              "classic_choice_is_itself": bridge.gradient_patcher(classic) is classic,
              "has_dynamic_class": hasattr(comfy.model_patcher, "ModelPatcherDynamic")}
    if result["has_dynamic_class"]:
        result.update(_dynamic(bridge, tiny, comfy.model_patcher, torch))
    print(json.dumps(result))


def _dynamic_patcher(model_patcher, model, torch):
    """A real ModelPatcherDynamic object initialised without comfy-aimdo (see the module docstring)."""
    cls = model_patcher.ModelPatcherDynamic
    patcher = cls.__new__(cls, model, torch.device("cuda", 0), torch.device("cpu"))
    model_patcher.ModelPatcher.__init__(patcher, model, torch.device("cuda", 0), torch.device("cpu"))
    patcher.non_dynamic_delegate_model = None  # set by ModelPatcherDynamic.__init__
    return patcher


def _dynamic(bridge, tiny, model_patcher, torch) -> dict:
    reloads = []

    def reload(disable_dynamic=False):  # the loader factory ComfyUI keeps in cached_patcher_init
        reloads.append(disable_dynamic)
        return tiny.build("flux", 0)[0]

    patcher = _dynamic_patcher(model_patcher, tiny.build("flux", 0)[0].model, torch)
    patcher.cached_patcher_init = (reload, ())
    key = next(k for k in patcher.model.state_dict() if k.startswith("diffusion_model.") and k.endswith(".weight"))
    patcher.add_patches({key: (torch.ones_like(patcher.model.state_dict()[key]),)}, 0.5)
    patcher.model_options["transformer_options"] = {"psi_probe": True}

    first = bridge.gradient_patcher(patcher)
    second = bridge.gradient_patcher(patcher)
    orphan = _dynamic_patcher(model_patcher, tiny.build("flux", 0)[0].model, torch)  # no cached_patcher_init
    try:
        bridge.gradient_patcher(orphan)
        orphan_error = None
    except Exception as err:  # the test reads the type and message
        orphan_error = [type(err).__name__, str(err)]
    return {
        "dynamic_is_dynamic": bridge.is_dynamic(patcher),
        "delegate_class": type(first).__name__,
        "delegate_is_dynamic": first.is_dynamic(),
        "delegate_model_is_separate": first.model is not patcher.model,
        "delegate_patches": sorted(first.patches) == sorted(patcher.patches) == [key],
        "delegate_model_options": first.model_options.get("transformer_options", {}).get("psi_probe", False),
        "reloads": reloads,
        "second_reuses_model": second.model is first.model,
        "orphan_error": orphan_error,
    }


if __name__ == "__main__":
    main()
