"""Registry of reward kinds with parameter specs, for the node layer.

    REWARD_KINDS: dict kind -> RewardKind(kind, title, description, differentiable,
                                          params: tuple[Param, ...], build)
    build_reward(kind, **params) -> Reward

A Param says its name, type, default (REQUIRED where it has none), allowed
choices or range, and a help line. Types:

    float, int, str, bool        plain values (float/int range-checked)
    choice                       one of `choices`
    path, folder                 a file / folder on disk (the node layer resolves
                                 ComfyUI model folders to absolute paths)
    phrases                      list[str]
    boxes                        list of [x1, y1, x2, y2]
    counts                       list of numbers >= 0
    color                        '#rrggbb' or (r, g, b) in [0, 1]
    size                         (width, height) in pixels
    object                       an already-built Python object (a detector, a vision
                                 callable, a list of rewards, a device ...)

`build_reward` fills defaults, rejects unknown or missing parameters, checks
numbers and choices, then calls the kind's builder (which validates targets
before loading any weights).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .aesthetic import AestheticReward, load_aesthetic_head, load_aesthetic_reward
from .base import Reward
from .checks import finite
from .combine import WeightedSum
from .grounding import PhraseDetector, load_grounding_dino, load_groundingdino_py
from .heldout import load_hpsv2, load_image_reward, load_pickscore
from .image_stats import GOALS, STATISTIC_NAMES, ImageStatReward
from .layout import MATCHINGS, LayoutReward
from .loading import RewardUnavailableError
from .quantity import QuantityReward
from .t2icount import T2ICOUNT_NEEDS_HOST, check_t2icount_file
from .targets import BOX_UNITS, CountTarget, LayoutTarget


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Param:
    """One parameter of a reward kind (see the module docstring for the types)."""

    name: str
    type: str
    default: Any = REQUIRED
    help: str = ""
    choices: tuple[Any, ...] = ()
    min: float | None = None
    max: float | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: Any) -> Any:
        """Validate a given value (None passes for optional params)."""
        if value is None and not self.required:
            return None
        if self.type == "choice" and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {self.choices}, got {value!r}")
        if self.type in ("float", "int"):
            number = finite(value, self.name)
            if self.type == "int" and number != int(number):
                raise ValueError(f"{self.name} must be a whole number, got {value!r}")
            if self.min is not None and number < self.min:
                raise ValueError(f"{self.name} must be >= {self.min:g}, got {value!r}")
            if self.max is not None and number > self.max:
                raise ValueError(f"{self.name} must be <= {self.max:g}, got {value!r}")
            return int(number) if self.type == "int" else number
        return value


@dataclass(frozen=True)
class RewardKind:
    """A buildable reward kind."""

    kind: str
    title: str
    description: str
    differentiable: bool
    params: tuple[Param, ...]
    build: Callable[..., Reward]

    def describe(self) -> str:
        lines = [f"{self.kind}: {self.title} ({'differentiable' if self.differentiable else 'no gradient'})",
                 f"  {self.description}"]
        for p in self.params:
            default = "required" if p.required else f"default {p.default!r}"
            extra = f", one of {p.choices}" if p.choices else ""
            lines.append(f"  - {p.name} [{p.type}{extra}; {default}] {p.help}")
        return "\n".join(lines)


def build_reward(kind: str, **params: Any) -> Reward:
    """Build a reward of `kind` from keyword parameters (see REWARD_KINDS[kind].params)."""
    if kind not in REWARD_KINDS:
        raise ValueError(f"unknown reward kind {kind!r}; known: {sorted(REWARD_KINDS)}")
    spec = REWARD_KINDS[kind]
    known = {p.name: p for p in spec.params}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"reward {kind!r} has no parameter(s) {unknown}; parameters: {sorted(known)}")
    values = {}
    for name, param in known.items():
        if name in params:
            values[name] = param.check(params[name])
        elif param.required:
            raise ValueError(f"reward {kind!r} needs the parameter {name!r} ({param.help})")
        else:
            values[name] = param.default
    return spec.build(**values)


# ---------------------------------------------------------------------------
# builders


def _device_param() -> Param:
    return Param("device", "object", None, "torch device to load weights onto (None: CPU)")


def _build_aesthetic(clip_folder, head_path, vision, vision_modules, device) -> Reward:
    if vision is not None:
        head = load_aesthetic_head(head_path)
        if device is not None:
            head.to(device)
        return AestheticReward(vision, head, vision_modules or ())
    if clip_folder is None:
        raise ValueError("the aesthetic reward needs clip_folder (a CLIP ViT-L/14 transformers folder) "
                         "or a vision callable")
    return load_aesthetic_reward(clip_folder, head_path, device)


def _detector(detector, backend, folder, checkpoint, bert_folder, device, shortest) -> PhraseDetector:
    if detector is not None:
        return detector
    if backend == "groundingdino-py":
        if checkpoint is None or bert_folder is None:
            raise ValueError("detector_backend 'groundingdino-py' needs groundingdino_checkpoint "
                             "(groundingdino_swint_ogc.pth) and groundingdino_bert_folder (a local "
                             f"bert-base-uncased folder); got {checkpoint!r} and {bert_folder!r}")
        return load_groundingdino_py(checkpoint, bert_folder, device, shortest=shortest)
    if folder is None:
        raise ValueError("give grounding_dino_folder (IDEA-Research/grounding-dino-base in transformers "
                         "format) or an already-loaded detector")
    return load_grounding_dino(folder, device, shortest=shortest)


def _detector_params() -> tuple[Param, ...]:
    return (
        Param("detector", "object", None, "an already-loaded detector (load_grounding_dino), shared between rewards"),
        Param("detector_backend", "choice", "transformers", "Grounding DINO implementation",
              choices=("transformers", "groundingdino-py")),
        Param("grounding_dino_folder", "folder", None, "transformers folder of IDEA-Research/grounding-dino-base"),
        Param("groundingdino_checkpoint", "path", None, "groundingdino_swint_ogc.pth (groundingdino-py backend)"),
        Param("groundingdino_bert_folder", "folder", None,
              "transformers folder of bert-base-uncased, the text encoder the groundingdino-py backend "
              "builds from (read locally, never downloaded)"),
        Param("shortest_side", "int", None, "detector input shortest side in px (default: the folder's, 800)",
              min=64, max=2048),
        _device_param(),
    )


def _build_layout(phrases, boxes, box_units, image_size, matching, temperature, iou_weight,
                  detector, detector_backend, grounding_dino_folder, groundingdino_checkpoint,
                  groundingdino_bert_folder, shortest_side, device) -> Reward:
    target = LayoutTarget.build(phrases, boxes, box_units, image_size)
    found = _detector(detector, detector_backend, grounding_dino_folder, groundingdino_checkpoint,
                      groundingdino_bert_folder, device, shortest_side)
    return LayoutReward(found, target, matching, temperature, iou_weight)


def _build_quantity(objects, counts, backend, box_threshold, temperature, beta, t2icount_checkpoint,
                    detector, detector_backend, grounding_dino_folder, groundingdino_checkpoint,
                    groundingdino_bert_folder, shortest_side, device) -> Reward:
    target = CountTarget.build(objects, counts)
    if backend == "t2icount":
        if t2icount_checkpoint is None:
            raise ValueError("backend 't2icount' needs t2icount_checkpoint")
        check_t2icount_file(t2icount_checkpoint)
        raise RewardUnavailableError(T2ICOUNT_NEEDS_HOST)
    found = _detector(detector, detector_backend, grounding_dino_folder, groundingdino_checkpoint,
                      groundingdino_bert_folder, device, shortest_side)
    return QuantityReward(found, target, box_threshold, temperature, beta)


def _build_weighted_sum(rewards, weights) -> Reward:
    return WeightedSum(rewards, weights)


REWARD_KINDS: dict[str, RewardKind] = {
    k.kind: k
    for k in (
        RewardKind(
            "aesthetic", "Aesthetic (LAION improved predictor)",
            "CLIP ViT-L/14 embedding into the LAION aesthetic MLP; about 1 (poor) to 10 (excellent).",
            True,
            (
                Param("head_path", "path", REQUIRED, "sac+logos+ava1-l14-linearMSE.pth"),
                Param("clip_folder", "folder", None, "transformers folder of openai/clip-vit-large-patch14"),
                Param("vision", "object", None, "callable: CLIP-normalised pixels [B,3,224,224] -> [B,768] "
                      "(e.g. the host's CLIP vision model, wrapped); replaces clip_folder"),
                Param("vision_modules", "object", None, "torch modules holding the vision callable's weights"),
                _device_param(),
            ),
            _build_aesthetic,
        ),
        RewardKind(
            "layout", "Layout (Grounding DINO mean IoU)",
            "Mean IoU in [0, 1] between Grounding DINO's boxes for each phrase and its target box.",
            True,
            (
                Param("phrases", "phrases", REQUIRED, "one phrase per target box, e.g. ['cat', 'horse']"),
                Param("boxes", "boxes", REQUIRED, "xyxy boxes, one per phrase"),
                Param("box_units", "choice", "auto", "normalized [0,1], pixels, or auto (pixels if any > 1)",
                      choices=BOX_UNITS),
                Param("image_size", "size", None, "(width, height) the pixel boxes refer to"),
                Param("matching", "choice", "soft", "soft (gradient through logits and boxes) or greedy "
                      "(the reference's hard rule)", choices=MATCHINGS),
                Param("temperature", "float", 0.25, "soft matching: logit temperature", min=1e-6),
                Param("iou_weight", "float", 8.0, "soft matching: weight of overlap in the choice", min=0.0),
                *_detector_params(),
            ),
            _build_layout,
        ),
        RewardKind(
            "quantity", "Quantity (soft object count)",
            "Minus the sum over objects of SmoothL1(count - target); 0 when every count is right.",
            True,
            (
                Param("objects", "phrases", REQUIRED, "object phrases, e.g. ['eggs']"),
                Param("counts", "counts", REQUIRED, "target count per object"),
                Param("backend", "choice", "grounding_dino", "counter", choices=("grounding_dino", "t2icount")),
                Param("box_threshold", "float", 0.35, "detection probability threshold", min=1e-4, max=1 - 1e-4),
                Param("temperature", "float", 0.1, "soft count temperature (logit units)", min=1e-6),
                Param("beta", "float", 1.0, "SmoothL1 beta", min=1e-6),
                Param("t2icount_checkpoint", "path", None, "best_model_paper.pth (t2icount backend)"),
                *_detector_params(),
            ),
            _build_quantity,
        ),
        RewardKind(
            "image_stat", "Image statistic",
            "A weight-free statistic (brightness, contrast, saturation, colorfulness, sharpness, "
            "closeness to a colour) to maximise, minimise or bring to a target.",
            True,
            (
                Param("statistic", "choice", "brightness", "which statistic", choices=STATISTIC_NAMES),
                Param("goal", "choice", "maximize", "maximize, minimize, or target", choices=GOALS),
                Param("target", "float", None, "target value (goal 'target')"),
                Param("color", "color", None, "target colour (statistic 'color')"),
            ),
            ImageStatReward,
        ),
        RewardKind(
            "pickscore", "PickScore (held-out scorer)",
            "logit_scale * cos(image, prompt) with the PickScore CLIP ViT-H/14.",
            True,
            (
                Param("model_folder", "folder", REQUIRED, "transformers folder of yuvalkirstain/PickScore_v1"),
                Param("prompt", "str", REQUIRED, "the generation prompt"),
                Param("processor_folder", "folder", None,
                      "laion/CLIP-ViT-H-14-laion2B-s32B-b79K (tokenizer); default model_folder"),
                _device_param(),
            ),
            load_pickscore,
        ),
        RewardKind(
            "hpsv2", "HPS v2 (held-out scorer; optional open_clip_torch)",
            "cos(image, prompt) with the HPS v2 open_clip ViT-H-14.",
            True,
            (
                Param("checkpoint", "path", REQUIRED, "HPS_v2.1_compressed.pt"),
                Param("prompt", "str", REQUIRED, "the generation prompt"),
                _device_param(),
            ),
            load_hpsv2,
        ),
        RewardKind(
            "imagereward", "ImageReward (held-out scorer; optional image-reward)",
            "BLIP ViT + BLIP text encoder + MLP on this pack's differentiable preprocessing; "
            "needs image-reward with transformers <= 4.55.",
            True,
            (
                Param("checkpoint", "path", REQUIRED, "ImageReward.pt"),
                Param("med_config", "path", REQUIRED, "med_config.json"),
                Param("prompt", "str", REQUIRED, "the generation prompt"),
                Param("tokenizer_folder", "folder", None,
                      "bert-base-uncased tokenizer (vocab.txt); default: the folder of med_config.json"),
                Param("device", "object", "cpu", "torch device"),
            ),
            load_image_reward,
        ),
        RewardKind(
            "weighted_sum", "Weighted sum of rewards",
            "sum_i w_i * reward_i; differentiable only if every part is.",
            True,
            (
                Param("rewards", "object", REQUIRED, "list of built rewards"),
                Param("weights", "object", None, "one finite weight per reward (default all 1)"),
            ),
            _build_weighted_sum,
        ),
    )
}


def describe_kinds() -> str:
    """Human-readable list of every reward kind and its parameters."""
    return "\n\n".join(kind.describe() for kind in REWARD_KINDS.values())
