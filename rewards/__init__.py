"""Rewards for Psi-Sampler: score decoded images [B, 3, H, W] in [0, 1] -> [B].

No ComfyUI imports here: loaders take explicit file and folder paths (the node
layer resolves ComfyUI's model folders). See `base.Reward` for the contract. Each
reward is a plain module with one way to build it: a loader that reads weights
(`load_aesthetic_reward`, `load_pickscore`, `load_hpsv2`, `load_image_reward`), or a
constructor over an already-loaded detector (`LayoutReward`, `QuantityReward`, from
`load_grounding_dino` or the optional `grounding_py.load_groundingdino_py`) or over
other rewards (`WeightedSum`). Input checks use `psi_core.validation`.
"""

from .aesthetic import AestheticHead, AestheticReward, load_aesthetic_head, load_aesthetic_reward, load_clip_vision
from .base import Reward, check_images
from .clip import ClipImageEmbedder
from .combine import WeightedSum
from .grounding import Detections, TransformersGroundingDino, box_iou, cxcywh_to_xyxy, load_grounding_dino
from .grounding_py import load_groundingdino_py
from .heldout import PromptSimilarityReward, load_hpsv2, load_pickscore, pickscore_reward
from .image_reward import load_image_reward
from .image_stats import ImageStatReward
from .layout import LayoutReward, greedy_matched_iou, soft_matched_iou
from .loading import RewardLoadError, RewardUnavailableError, load_state_dict
from .quantity import QuantityReward, count_reward, soft_count
from .targets import CountTarget, LayoutTarget

__all__ = [
    "AestheticHead", "AestheticReward", "ClipImageEmbedder", "CountTarget", "Detections",
    "ImageStatReward", "LayoutReward", "LayoutTarget", "PromptSimilarityReward",
    "QuantityReward", "Reward", "RewardLoadError",
    "RewardUnavailableError", "TransformersGroundingDino", "WeightedSum", "box_iou",
    "check_images", "count_reward", "cxcywh_to_xyxy",
    "greedy_matched_iou", "load_aesthetic_head", "load_aesthetic_reward", "load_clip_vision",
    "load_grounding_dino", "load_groundingdino_py", "load_hpsv2", "load_image_reward",
    "load_pickscore", "load_state_dict", "pickscore_reward", "soft_count",
    "soft_matched_iou",
]
