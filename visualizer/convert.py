"""Which steps to show, the trace's recorded latents, and Pillow <-> ComfyUI IMAGE conversion."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

INITIAL = -1
"""Row key of the starting particles (the trace's `initial_*` fields); SMC step i has key i."""


def choose_steps(num_steps: int, max_rows: int) -> list[int]:
    """Up to `max_rows` SMC step indices in [0, num_steps), evenly spaced, always ending with
    the last step (the final particles); all steps when there are no more than `max_rows`.

    choose_steps(25, 5) == [0, 6, 12, 18, 24]; choose_steps(25, 1) == [24]."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0:
        raise ValueError(f"num_steps must be a non-negative integer; got {num_steps!r}")
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"max_rows must be an integer >= 1; got {max_rows!r}")
    if num_steps <= max_rows:
        return list(range(num_steps))
    if max_rows == 1:
        return [num_steps - 1]
    last = num_steps - 1
    return sorted({round(i * last / (max_rows - 1)) for i in range(max_rows)})


def recorded_latents(trace) -> dict[int, torch.Tensor]:
    """The predicted clean latents the trace kept: {INITIAL: initial_x0_hat, i: smc[i].x0_hat}
    for those present (keys in the order the grid shows them). The caller decodes them."""
    found: dict[int, torch.Tensor] = {}
    if trace.initial_x0_hat is not None:
        found[INITIAL] = trace.initial_x0_hat
    for record in trace.smc:
        if record.x0_hat is not None:
            found[record.step] = record.x0_hat
    return found


def pil_to_tensor(images: Image.Image | list[Image.Image]) -> torch.Tensor:
    """Pillow image(s) of one size -> ComfyUI IMAGE: float32 [B, H, W, 3] in [0, 1]."""
    batch = [images] if isinstance(images, Image.Image) else list(images)
    if not batch:
        raise ValueError("pil_to_tensor needs at least one image")
    sizes = {im.size for im in batch}
    if len(sizes) != 1:
        raise ValueError(f"images in one IMAGE batch must share a size; got {sorted(sizes)}")
    arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in batch]
    return torch.from_numpy(np.stack(arrays))


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """ComfyUI IMAGE [B, H, W, C] (or one [H, W, C]) in [0, 1] -> RGB Pillow images (C = 1, 3 or 4)."""
    rgb = as_rgb(images if images.dim() == 4 else images.unsqueeze(0))
    data = (rgb * 255.0).round().to(torch.uint8).numpy()
    return [Image.fromarray(frame, "RGB") for frame in data]


def as_rgb(images: torch.Tensor) -> torch.Tensor:
    """A detached float32 CPU copy of [B, H, W, C] images as [B, H, W, 3], clamped to [0, 1]."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[-1] not in (1, 3, 4):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected images [B, H, W, C] with C in (1, 3, 4); got {shape}")
    out = images.detach().to("cpu", torch.float32)
    out = out.expand(*out.shape[:-1], 3) if out.shape[-1] == 1 else out[..., :3]
    return torch.nan_to_num(out, nan=0.0).clamp(0.0, 1.0).contiguous()
