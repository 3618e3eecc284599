"""Which model the reward gradient cannot pass through, and why, named from autograd's own error.

A gradient pass (Yoon et al., arXiv 2506.01320, eq. for ∇_x r̂(x, σ): through the denoiser, the
VAE decoder and the reward) needs a backward formula for every op on the differentiated path.
Some image models reach ops that have none: fused kernels registered as `torch.library` custom ops
without `register_autograd` (comfy-kitchen's ungated kernels, attention backends such as
SageAttention), or ATen ops whose derivative PyTorch does not implement. Autograd then fails in
backward with a message that names the op; this module turns that message into a refusal that
names the model class and the op and says what still works without gradients (gradient-free SMC,
Top-K and prior initial particles: forward passes only).

No ComfyUI import: the bridge hands in the class names.
"""

from __future__ import annotations

import re

#: autograd's messages for an op without a backward formula -> the op's name (group 1)
NO_BACKWARD_PATTERNS = (
    re.compile(r"Trying to backward through (\S+) but no autograd formula was registered"),
    re.compile(r"derivative for (\S+) is not implemented"),
    re.compile(r"autograd kernel was not registered to the Autograd key\(s\) but we are trying to backprop through "
               r"it.*?operator (\S+)", re.S),
)

WHAT_STILL_WORKS = ("reward gradients cannot be taken through this model: use gradient-free SMC (turn on "
                    "gradient_free on the Ψ SMC Sampler) with the topk or prior initial method, which run forward "
                    "passes only")


def op_without_backward(err: BaseException) -> str | None:
    """The op named by autograd's error `err` when it is an op without a backward formula, else None."""
    text = str(err)
    for pattern in NO_BACKWARD_PATTERNS:
        found = pattern.search(text)
        if found:
            return found.group(1).rstrip(".,:;'\"")
    return None


def refusal_message(model_class: str, vae_class: str, reward_name: str, op: str) -> str:
    """Why the reward gradient is refused (the path: model, VAE, reward), and what to use instead."""
    return (f"the reward gradient's path (model {model_class}, VAE {vae_class}, reward {reward_name}) reaches the "
            f"op {op}, which has no backward (no autograd formula); {WHAT_STILL_WORKS}")
