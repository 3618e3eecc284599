"""PsiScoreImages: score any IMAGE batch with a PSI_REWARD and show the scores on the node.

ComfyUI IMAGE is [B, H, W, C] in [0, 1]; rewards take [B, 3, H, W], so the batch is
permuted (alpha dropped, grey repeated). The reward's weights are moved to the
compute device for scoring and back afterwards (`comfy_host.memory.reward_on`, as the
samplers do). Scores are shown under the node
(progress text while running, then the UI text) and returned as JSON and as one
number (the mean or the best score).
"""

from __future__ import annotations

import json
import math

import torch
from comfy_api.latest import io, ui

from ..comfy_host.checks import check_reward
from ..comfy_host.events import show_text
from ..comfy_host.memory import compute_device, reward_on
from ..comfy_host.progress import check_interrupt
from .declared import check_execution_inputs, validate
from .types import PsiReward

SUMMARIES = ("mean", "best")


def to_bchw(images: torch.Tensor) -> torch.Tensor:
    """IMAGE [B, H, W, C] (C = 1, 3 or 4) -> float32 [B, 3, H, W]."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be an IMAGE batch [B, H, W, 3]; got {shape}")
    pixels = images[..., :3] if images.shape[-1] >= 3 else images.expand(*images.shape[:-1], 3)
    return pixels.permute(0, 3, 1, 2).to(torch.float32)


def score_batches(reward, images: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Scores [B] (float32, CPU) of images [B, 3, H, W], `batch_size` at a time on `device`."""
    scores = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            check_interrupt()
            chunk = images[start:start + batch_size].to(device)
            scores.append(reward(chunk).detach().float().reshape(-1).cpu())
    return torch.cat(scores)


def summarise(scores: list[float]) -> tuple[float, float, int]:
    """(mean, best, index of the best) over the finite scores; nan and -1 where none is finite."""
    finite = [(s, i) for i, s in enumerate(scores) if math.isfinite(s)]
    if not finite:
        return float("nan"), float("nan"), -1
    best, index = max(finite, key=lambda pair: (pair[0], -pair[1]))
    return sum(s for s, _ in finite) / len(finite), best, index


def _fmt(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else "nan"


class PsiScoreImages(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PsiScoreImages",
            display_name="Ψ Score Images",
            category="sampling/psi",
            description=("Scores every image of a batch with a Ψ reward (or held-out scorer) and shows the scores on "
                         "the node; outputs them as JSON and their mean or best as a number."),
            inputs=[
                io.Image.Input("images", tooltip="The images to score (any batch size and resolution)."),
                PsiReward.Input("reward", tooltip="The reward or scorer (a Ψ reward node) to score them with."),
                io.Combo.Input("summary", options=list(SUMMARIES), default="mean",
                               tooltip="What the number output is: the mean score or the best (highest) score."),
                io.Int.Input("batch_size", default=4, min=1, max=256,
                             tooltip="Images scored together; lower it if the scorer runs out of memory."),
            ],
            outputs=[
                io.String.Output("scores", display_name="scores",
                                 tooltip='JSON: {"reward", "scores" (one per image, in batch order), "mean", "best", '
                                         '"best_index"}.'),
                io.Float.Output("score", display_name="score", tooltip="The mean or best score (see summary)."),
            ],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, **values):
        return validate(cls, values)

    @classmethod
    def execute(cls, images, reward, summary, batch_size) -> io.NodeOutput:
        check_execution_inputs(cls, locals())
        check_reward(reward, needs_gradient=False, purpose="scoring")
        if summary not in SUMMARIES:
            raise ValueError(f"summary must be one of {SUMMARIES}; got {summary!r}")
        pixels = to_bchw(images)
        device = compute_device()
        with reward_on(reward, device, make_room=True):
            values = score_batches(reward, pixels, int(batch_size), device).tolist()
        mean, best, best_index = summarise(values)
        name = reward.describe() if hasattr(reward, "describe") else getattr(reward, "name", "reward")
        report = {"reward": name, "scores": [v if math.isfinite(v) else None for v in values],
                  "mean": mean if math.isfinite(mean) else None, "best": best if math.isfinite(best) else None,
                  "best_index": best_index}
        text = (f"{getattr(reward, 'name', 'reward')}: " + ", ".join(_fmt(v) for v in values)
                + f"\nmean {_fmt(mean)} · best {_fmt(best)} (#{best_index})")
        show_text(text)
        value = mean if summary == "mean" else best
        return io.NodeOutput(json.dumps(report), float(value), ui=ui.PreviewText(text))
