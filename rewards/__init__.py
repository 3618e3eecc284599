"""Rewards for Psi-Sampler: score decoded images [B, 3, H, W] in [0, 1] -> [B].

No ComfyUI imports here: loaders take explicit file and folder paths (the node
layer resolves ComfyUI's model folders). See `base.Reward` for the contract and
`registry.REWARD_KINDS` / `registry.build_reward` for building rewards by name.
"""

from .aesthetic import AestheticHead, AestheticReward, load_aesthetic_head, load_aesthetic_reward, load_clip_vision
from .base import Reward, check_images
from .clip import ClipImageEmbedder
from .combine import WeightedSum
from .grounding import (
    Detections,
    TransformersGroundingDino,
    box_iou,
    cxcywh_to_xyxy,
    load_grounding_dino,
    load_groundingdino_py,
)
from .heldout import PromptSimilarityReward, load_hpsv2, load_image_reward, load_pickscore, pickscore_reward
from .image_stats import ImageStatReward
from .layout import LayoutReward, greedy_matched_iou, soft_matched_iou
from .loading import RewardLoadError, RewardUnavailableError, load_state_dict
from .quantity import QuantityReward, count_reward, load_t2icount, soft_count
from .registry import REWARD_KINDS, Param, RewardKind, build_reward, describe_kinds
from .targets import CountTarget, LayoutTarget

__all__ = [
    "AestheticHead", "AestheticReward", "ClipImageEmbedder", "CountTarget", "Detections",
    "ImageStatReward", "LayoutReward", "LayoutTarget", "Param", "PromptSimilarityReward",
    "QuantityReward", "REWARD_KINDS", "Reward", "RewardKind", "RewardLoadError",
    "RewardUnavailableError", "TransformersGroundingDino", "WeightedSum", "box_iou",
    "build_reward", "check_images", "count_reward", "cxcywh_to_xyxy", "describe_kinds",
    "greedy_matched_iou", "load_aesthetic_head", "load_aesthetic_reward", "load_clip_vision",
    "load_grounding_dino", "load_groundingdino_py", "load_hpsv2", "load_image_reward",
    "load_pickscore", "load_state_dict", "load_t2icount", "pickscore_reward", "soft_count",
    "soft_matched_iou",
]
