"""Load psi-sampler into a ComfyUI that is outside the tested range and lacks symbols
the pack needs, with ComfyUI's own custom-node loader; run a node; print JSON.

Run by test_host_compat.py with the host's python in the host's folder:
    python compat_probe.py PACK_DIR VERSION SYMBOL [SYMBOL ...]
VERSION replaces `comfyui_version.__version__`; each SYMBOL ("comfy.samplers.KSAMPLER")
is deleted from its module before the pack loads. Prints one JSON line: whether the
loader accepted the pack, the Ψ node ids it registered, the log lines that mention
psi-sampler, and the error (type, message) of running PsiSMCSamplerCustom.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import logging
import sys

from probe_setup import import_host


def main() -> None:
    pack, version, *symbols = sys.argv[1:]
    import_host()
    log = io.StringIO()
    logging.basicConfig(stream=log, level=logging.INFO, force=True)
    import comfyui_version
    import nodes
    comfyui_version.__version__ = version
    for path in symbols:
        module_name, _, name = path.rpartition(".")
        delattr(importlib.import_module(module_name), name)

    loaded = asyncio.run(nodes.load_custom_node(pack, module_parent="custom_nodes"))
    registered = sorted(k for k in nodes.NODE_CLASS_MAPPINGS if k.startswith("Psi"))
    result = {"loaded": loaded, "registered": registered}
    if "PsiSMCSamplerCustom" in nodes.NODE_CLASS_MAPPINGS:
        node = nodes.NODE_CLASS_MAPPINGS["PsiSMCSamplerCustom"]
        reward = type("Reward", (), {"differentiable": True, "name": "probe", "__call__": lambda self, x: x})()
        import comfy.sd
        vae = object.__new__(comfy.sd.VAE)  # passes the node's check of its input's kind; never decodes here
        try:
            node.execute(vae=vae, reward=reward, alpha=0.1, ess_threshold=0.5, resampling="systematic", eta=1.0,
                         guidance=1.0, gradient_free=False, grad_batch_size=2, output="best")
            result["error"] = None
        except Exception as err:  # the test reads the type and message
            result["error"] = [type(err).__name__, str(err)]
    result["log"] = [line for line in log.getvalue().splitlines() if "psi" in line.lower()]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
