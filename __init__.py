"""psi-sampler: reward-aligned SMC sampling (Ψ-Sampler, arXiv 2506.01320) for ComfyUI.

Kept tiny and import-safe: nothing here imports ComfyUI, so the pack's pure parts
(`psi_core`, `rewards`) can be imported and tested without a host. ComfyUI calls
`comfy_entrypoint()` to get the V3 extension.
"""

WEB_DIRECTORY = "./js"


async def comfy_entrypoint():
    from .nodes import PsiExtension

    return PsiExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
