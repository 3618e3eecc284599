"""Layout reward (the paper's): mean IoU between detected and target boxes.

For each target (phrase, box) one detected box is chosen among Grounding DINO's
queries and the reward is the mean IoU over targets, per image: [B] in [0, 1].

Matching, chosen per reward:

* "soft" (default, keeps a gradient through boxes and logits): for target n with
  phrase p(n) and box g_n, each query q gets a weight
      w[q, n] = softmax_q( logit[q, p(n)] / temperature + iou_weight * IoU(box_q, g_n) )
  and the target's score is the expected IoU  sum_q w[q, n] * IoU(box_q, g_n).
  This is a smooth version of the reference's rule "among the confident
  detections of the phrase, take the best-overlapping one": confidence gates the
  choice (background queries have logits several units lower), overlap picks among
  confident ones, and targets that share a phrase each attract the detection
  nearest to their own box. When one query dominates, it equals that box's exact IoU.
  Gradients flow into the chosen boxes' coordinates and into the logits (the
  detector grows more confident of a well-placed object).

* "greedy" (the reference implementation's rule, hard selection): targets in order;
  candidates are the phrase's `top_k` highest-logit queries with logit > `min_logit`
  not used by an earlier target; take the best IoU if it exceeds `min_iou`, else the
  phrase's top query. The selection carries no gradient; the IoU of the selected
  box does (through its coordinates).
"""

from __future__ import annotations

import torch

from ..psi_core.validation import choice, non_negative, positive_finite
from .grounding import DetectorReward, PhraseDetector, pairwise_iou
from .targets import LayoutTarget

MATCHINGS = ("soft", "greedy")


def soft_matched_iou(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    targets: torch.Tensor,
    phrase_index: torch.Tensor,
    temperature: float = 0.25,
    iou_weight: float = 8.0,
) -> torch.Tensor:
    """Expected IoU per target under soft matching.

    logits [B, Q, P] phrase logits; boxes [B, Q, 4] xyxy; targets [N, 4] xyxy;
    phrase_index long [N] (target -> phrase) -> IoU [B, N].
    """
    iou = pairwise_iou(boxes, targets)  # [B, Q, N]
    target_logits = logits[:, :, phrase_index.to(logits.device)]  # [B, Q, N]
    weights = torch.softmax(target_logits / temperature + iou_weight * iou, dim=1)
    return (weights * iou).sum(dim=1)


def greedy_matched_iou(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    targets: torch.Tensor,
    phrase_index: torch.Tensor,
    top_k: int = 10,
    min_logit: float = 0.1,
    min_iou: float = 0.1,
) -> torch.Tensor:
    """IoU per target under the reference's greedy hard matching (see module docstring).

    Same shapes as `soft_matched_iou`: -> IoU [B, N]; gradient through the boxes only.
    """
    iou = pairwise_iou(boxes, targets)  # [B, Q, N]
    batch, queries, count = iou.shape
    k = min(top_k, queries)
    chosen = torch.empty(batch, count, dtype=torch.long, device=iou.device)
    with torch.no_grad():
        used = torch.zeros(batch, queries, dtype=torch.bool, device=iou.device)
        rows = torch.arange(batch, device=iou.device)
        for n in range(count):
            scores = logits[:, :, int(phrase_index[n])]
            top_scores, top = scores.topk(k, dim=1)  # [B, k]
            ok = (top_scores > min_logit) & ~used.gather(1, top)
            cand_iou = torch.where(ok, iou[:, :, n].gather(1, top), torch.full_like(top_scores, -1.0))
            best_iou, best = cand_iou.max(dim=1)
            pick = torch.where(best_iou > min_iou, top.gather(1, best[:, None])[:, 0], top[:, 0])
            chosen[:, n] = pick
            used[rows, pick] = True
    return iou.gather(1, chosen[:, None, :])[:, 0, :]


class LayoutReward(DetectorReward):
    """Mean IoU of detected vs target boxes: [B, 3, H, W] in [0, 1] -> [B] in [0, 1]."""

    name = "layout"
    differentiable = True

    def __init__(
        self,
        detector: PhraseDetector,
        target: LayoutTarget,
        matching: str = "soft",
        temperature: float = 0.25,
        iou_weight: float = 8.0,
    ) -> None:
        if not isinstance(target, LayoutTarget):
            raise TypeError("target must be a LayoutTarget (use LayoutTarget.build(phrases, boxes, ...))")
        choice("matching", matching, MATCHINGS)
        self.temperature = positive_finite("temperature", temperature)
        self.iou_weight = non_negative("iou_weight", iou_weight)
        self.matching = matching
        self.target = target
        super().__init__(detector, target.unique_phrases)

    def matched_iou(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> IoU per target [B, N]."""
        det = self.detect(images)
        targets, index = self.target.boxes.to(det.boxes.device), self.target.phrase_index
        if self.matching == "greedy":
            return greedy_matched_iou(det.phrase_logits, det.boxes, targets, index)
        return soft_matched_iou(
            det.phrase_logits, det.boxes, targets, index, self.temperature, self.iou_weight
        )

    def score(self, images: torch.Tensor) -> torch.Tensor:
        return self.matched_iou(images).mean(dim=1)

    def describe(self) -> str:
        return f"layout mean IoU ({self.matching} matching): {self.target.describe()}"
