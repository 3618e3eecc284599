"""Quantity reward (the paper's task): match a target count per object.

reward = - sum_k SmoothL1_beta(count_k - target_k)        ([B], at most 0)

The paper scores counts with SmoothL1 (lower is better); the reward is its negative.

Counts come from a differentiable soft count over Grounding DINO's queries (default
backend): a query counts as a detection of object k by

    sigmoid((logit[q, k] - logit(box_threshold)) / temperature)

summed over queries. As temperature -> 0 this is the number of queries whose
probability exceeds box_threshold (Grounding DINO's usual detection rule); a positive
temperature keeps a gradient. The paper's T2ICount counter (a fine-tuned SD1.5 UNet
and a counting head, `t2icount.T2ICountReward`) runs with the host's SD1.5 VAE and
CLIP; `t2icount.read_t2icount_checkpoint` reads its checkpoint.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..psi_core.validation import in_range, positive_finite
from .grounding import DetectorReward, PhraseDetector
from .loading import WeightsSource
from .targets import CountTarget


def soft_count(logits: torch.Tensor, threshold_logit: float, temperature: float) -> torch.Tensor:
    """Soft number of detections per phrase: logits [B, Q, K] -> counts [B, K]."""
    return torch.sigmoid((logits - threshold_logit) / temperature).sum(dim=1)


def count_reward(counts: torch.Tensor, targets: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """- sum_k SmoothL1_beta(counts - targets): counts [B, K], targets [K] -> [B]."""
    target = targets.to(counts).expand_as(counts)
    return -F.smooth_l1_loss(counts, target, reduction="none", beta=beta).sum(dim=-1)


class QuantityReward(DetectorReward):
    """Negative SmoothL1 count error: [B, 3, H, W] in [0, 1] -> [B] (<= 0, 0 is exact)."""

    name = "quantity"
    differentiable = True

    def __init__(
        self,
        detector: PhraseDetector,
        target: CountTarget,
        box_threshold: float = 0.35,
        temperature: float = 0.1,
        beta: float = 1.0,
    ) -> None:
        if not isinstance(target, CountTarget):
            raise TypeError("target must be a CountTarget (use CountTarget.build(objects, counts))")
        threshold = in_range("box_threshold", box_threshold, 0.0, 1.0, low_open=True, high_open=True)
        self.box_threshold = threshold
        self.threshold_logit = math.log(threshold / (1.0 - threshold))
        self.temperature = positive_finite("temperature", temperature)
        self.beta = positive_finite("beta", beta)
        self.target = target
        super().__init__(detector, target.objects)

    def counts(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> soft counts [B, K] (one per object)."""
        det = self.detect(images)
        return soft_count(det.phrase_logits, self.threshold_logit, self.temperature)

    def score(self, images: torch.Tensor) -> torch.Tensor:
        return count_reward(self.counts(images), self.target.counts, self.beta)

    def describe(self) -> str:
        return (
            f"quantity (soft count, threshold {self.box_threshold:g}, "
            f"temperature {self.temperature:g}): {self.target.describe()}"
        )


T2ICOUNT_FILE = "best_model_paper.pth"
T2ICOUNT_SOURCE = WeightsSource(
    what="T2ICount counter",
    expected=(f"{T2ICOUNT_FILE}: the authors' state dict of their whole model (keys unet.unet.diffusion_model.*, "
              "decoder.*, vae.*, clip.*); the Stable Diffusion 1.5 VAE and CLIP come from the host"),
    origin="the T2ICount authors' release (github.com/cha15yq/T2ICount, 'pre-trained ckpt'), as used by Psi-Sampler",
)
