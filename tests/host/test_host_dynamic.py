"""The bridge's gradient patcher against ComfyUI's own dynamic-VRAM class.

dynamic_probe.py runs in the host's python: on 0.33 it makes a real
`ModelPatcherDynamic` object (initialised without comfy-aimdo, which a CPU
cannot run) whose delegate comes from ComfyUI's own `get_non_dynamic_delegate`
and `clone(disable_dynamic=True)`; on 0.3.64, which has no such class, the
bridge must keep classic patchers as they are. What only a GPU can show (loading
the delegate next to a streamed model, VRAM and RAM use) is not tested here.
"""

from __future__ import annotations

from host_probe import FIXTURE_PACK, REPO, run_probe


def test_gradient_patcher_uses_comfyuis_non_dynamic_delegate():
    result = run_probe("dynamic_probe.py", str(REPO), str(FIXTURE_PACK))
    assert result["classic_is_dynamic"] is False and result["classic_choice_is_itself"]
    if not result["has_dynamic_class"]:  # 0.3.64: no dynamic VRAM, nothing else to choose
        return
    assert result["dynamic_is_dynamic"]
    assert result["delegate_class"] == "ModelPatcher" and not result["delegate_is_dynamic"]
    assert result["delegate_model_is_separate"]  # a second copy of the weights, reloaded ...
    assert result["reloads"] == [True]  # ... once, by the loader's factory with disable_dynamic=True
    assert result["second_reuses_model"]  # later runs reuse it
    assert result["delegate_patches"] and result["delegate_model_options"]  # LoRA patches and options carried
    kind, message = result["orphan_error"]  # a model whose loader cannot reload it
    assert kind == "HostInputError" and "--disable-dynamic-vram" in message and "cached_patcher_init" in message
