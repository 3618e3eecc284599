"""The original Grounding DINO (`groundingdino-py`, import name `groundingdino`) as a PhraseDetector.

An optional backend: groundingdino-py 0.4.0 builds its BERT text encoder through
`BertModel` methods that transformers 5 removed (`get_extended_attention_mask`,
`get_head_mask`), so it runs only with transformers < 5, which ComfyUI does not
install. `groundingdino_py_usable` says, without importing the package, whether it
can run here; `load_groundingdino_py` refuses with the reason where it cannot.

The model is built with the package's own builder from its Swin-T OGC config
(groundingdino/config/GroundingDINO_SwinT_OGC.py), with the text encoder read
from a LOCAL bert-base-uncased folder (the config's "bert-base-uncased" would be
fetched from the Hugging Face hub; a local folder is read from disk only). The
weights come from groundingdino_swint_ogc.pth through the pack's weights-only
loader; the file's BERT weights replace the folder's.

Images [B, 3, H, W] in [0, 1] are preprocessed by the pack's differentiable
`detector_style` (shortest side 800, longest <= 1333, ImageNet mean/std, as the
package's own inference transform) and passed as a NestedTensor with an all-valid
mask, so gradients reach the input pixels.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .grounding import Detections, PhraseText, cxcywh_to_xyxy, phrase_logits, tokenize_phrases
from .loading import (
    RewardLoadError,
    RewardUnavailableError,
    WeightsSource,
    check_model_folder,
    check_state_dict_shapes,
    freeze,
    import_optional,
    load_state_dict,
    transformers_major,
)
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, detector_style, to_model

#: queries of the official Swin-T OGC config
OFFICIAL_QUERIES = 900


def min_shortest_side(num_queries: int) -> int:
    """Smallest square side whose four feature levels (strides 8, 16, 32, 64) hold at least
    `num_queries` encoder positions (208 for the official 900: 26² + 13² + 7² + 4² = 910)."""
    side = 8
    while sum(math.ceil(side / stride) ** 2 for stride in (8, 16, 32, 64)) < num_queries:
        side += 8
    return side


GROUNDINGDINO_PY_SOURCE = WeightsSource(
    what="Grounding DINO Swin-T OGC checkpoint (groundingdino-py backend)",
    expected="groundingdino_swint_ogc.pth: a weights-only PyTorch file holding {'model': state_dict} "
    "(a flat state dict or .safetensors also loads)",
    origin="GitHub release IDEA-Research/GroundingDINO v0.1.0-alpha, or the Hugging Face repo "
    "ShilongLiu/GroundingDINO",
)

BERT_SOURCE = WeightsSource(
    what="BERT text encoder folder for groundingdino-py",
    expected="a transformers folder of bert-base-uncased: config.json + model.safetensors "
    "(or pytorch_model.bin) + vocab.txt (or tokenizer.json)",
    origin="Hugging Face repo google-bert/bert-base-uncased",
)

CONFIG_FILE = "GroundingDINO_SwinT_OGC.py"

# config entries a caller may not override: the text encoder comes from bert_folder,
# and the builder is chosen by modelname
_FIXED_KEYS = ("text_encoder_type", "modelname")


def _package_modules() -> tuple[Any, Any, Any, Path]:
    """(SLConfig, build_model, NestedTensor, config path) from the installed package.

    Raises RewardUnavailableError naming the missing module where the package's model
    code cannot be imported (it imports cv2, matplotlib, pycocotools, timm, addict, yapf).
    """
    try:
        import groundingdino
        from groundingdino.models import build_model
        from groundingdino.util.misc import NestedTensor
        from groundingdino.util.slconfig import SLConfig
    except ImportError as err:
        raise RewardUnavailableError(
            f"groundingdino-py is installed but its model code cannot be imported ({err}). It needs "
            "addict, yapf, timm, opencv-python(-headless), matplotlib and pycocotools next to torch, "
            "torchvision and transformers < 5"
        ) from err
    config = Path(groundingdino.__file__).resolve().parent / "config" / CONFIG_FILE
    if not config.is_file():
        raise RewardUnavailableError(
            f"groundingdino-py is installed but has no {CONFIG_FILE} (looked in {config.parent})"
        )
    return SLConfig, build_model, NestedTensor, config


def swint_ogc_args(bert_folder: Path, overrides: Mapping[str, Any] | None = None) -> Any:
    """The package's SwinT-OGC config with the text encoder set to `bert_folder`.

    Gradient checkpointing (a training-time memory saving; no weights) is switched off.
    `overrides` replaces config entries by name (tests build shrunken models this way;
    the official checkpoint needs none). Raises ValueError on an unknown or fixed name.
    """
    sl_config, _, _, path = _package_modules()
    args = sl_config.fromfile(str(path))
    known = sorted(k for k in args if k not in _FIXED_KEYS)
    for name, value in dict(overrides or {}).items():
        if name not in known:
            raise ValueError(
                f"config_overrides: {name!r} is not an entry of {CONFIG_FILE} that may be overridden; "
                f"allowed: {known}"
            )
        setattr(args, name, value)
    args.text_encoder_type = str(bert_folder)
    args.use_checkpoint = False
    args.use_transformer_ckpt = False
    return args


def build_swint_ogc(bert_folder: str | Path, overrides: Mapping[str, Any] | None = None) -> torch.nn.Module:
    """The package's GroundingDINO model (random detector weights, BERT from the folder)."""
    folder = check_model_folder(Path(bert_folder).resolve(), BERT_SOURCE, need=("vocab.txt|tokenizer.json",))
    args = swint_ogc_args(folder, overrides)
    _, build_model, _, _ = _package_modules()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the builder prints its text encoder path
            return build_model(args)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise RewardLoadError(BERT_SOURCE.message(f"the package could not build its model ({first})", folder)) from err


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """{name: tensor} from groundingdino_swint_ogc.pth ({'model': ...}), a flat pickle or safetensors.

    Pickles load with torch.load(weights_only=True) only; a "module." prefix (DDP) is removed.
    """
    state = load_state_dict(path, GROUNDINGDINO_PY_SOURCE)
    if not state or not all(isinstance(k, str) for k in state):
        raise RewardLoadError(
            GROUNDINGDINO_PY_SOURCE.message("the file holds no {name: tensor} state dict (flat or under 'model')", path)
        )
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load `state` into `model` with strict key and shape checks.

    The one tolerated difference: entries that are non-persistent buffers of the built
    model (e.g. bert.embeddings.position_ids, saved by the transformers of 2022 but not
    by 4.31+) are dropped. Raises RewardLoadError naming the file otherwise.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    buffers = {name for name, _ in model.named_buffers()}
    state = {k: v for k, v in state.items() if k in expected or k not in buffers}
    check_state_dict_shapes(state, expected, path, GROUNDINGDINO_PY_SOURCE)
    model.load_state_dict(state, strict=True)


def caption_of(phrases: tuple[str, ...]) -> str:
    """The package's caption for `phrases`: "a . b ." (its tokens must equal the phrases' own)."""
    return " . ".join(phrases) + " ."


class GroundingDinoPy:
    """groundingdino-py's GroundingDINO + its tokenizer behind the PhraseDetector protocol.

    The package tokenises the caption itself; `encode` checks that the caption
    "p1 . p2 ." tokenises to exactly the phrase-by-phrase ids whose spans give the
    per-phrase scores.
    """

    backend = "groundingdino-py"

    def __init__(self, model: torch.nn.Module, nested_tensor: Any, shortest: int = 800, longest: int = 1333) -> None:
        self.model = freeze(model)
        self.nested_tensor = nested_tensor  # the package's NestedTensor class
        self.shortest, self.longest = int(shortest), int(longest)
        self.tokenizer = model.tokenizer  # built by the package from the BERT folder
        self.max_text_len = int(model.max_text_len)

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def caption(self, text: PhraseText) -> str:
        """The caption the package tokenises; ValueError where its tokens differ from `text`."""
        caption = caption_of(text.phrases)
        ids = self.tokenizer(caption)["input_ids"]
        if list(ids) != text.input_ids[0].tolist():
            raise ValueError(
                f"the phrases {list(text.phrases)} tokenise differently inside the caption {caption!r} "
                "than one by one, so their token spans are ambiguous; avoid '.' and '?' inside phrases"
            )
        return caption

    def encode(self, phrases: tuple[str, ...]) -> PhraseText:
        text = tokenize_phrases(self.tokenizer, tuple(phrases), self.max_text_len)
        self.caption(text)  # the check, once: detect runs every step with this text
        return text

    def detect(self, images: torch.Tensor, text: PhraseText) -> Detections:
        """images [B, 3, H, W] in [0, 1] -> Detections for the phrases of `text` (from `encode`)."""
        caption = caption_of(text.phrases)
        pixels = to_model(
            detector_style(images.float(), self.shortest, self.longest, IMAGENET_MEAN, IMAGENET_STD), self.model
        )
        batch, _, height, width = pixels.shape
        valid = torch.zeros(batch, height, width, dtype=torch.bool, device=pixels.device)
        out = self.model(self.nested_tensor(pixels, valid), captions=[caption] * batch)
        logits = phrase_logits(out["pred_logits"].float(), text.token_mask)
        return Detections(logits, cxcywh_to_xyxy(out["pred_boxes"].float()))

    def describe(self) -> str:
        return f"Grounding DINO (groundingdino-py Swin-T OGC, shortest side {self.shortest}px)"


GROUNDINGDINO_PY_HINT = (
    "Or use the 'transformers' backend: a folder with IDEA-Research/grounding-dino-base in "
    "transformers format (config.json + model.safetensors + tokenizer files)."
)


def check_groundingdino_py_usable(what: str = "the checkpoint") -> None:
    """Raise RewardUnavailableError, with the reason, where the groundingdino-py backend
    cannot run here: the package is missing, or transformers >= 5 (checked by importing the
    package's top level only, without its model code or any weights, so nodes can refuse
    a prompt before sampling)."""
    import_optional(
        "groundingdino",
        "It is optional (the pack's groundingdino-py extra): `pip install groundingdino-py` (it needs transformers < 5 and pulls "
        "opencv, supervision, pycocotools and timm). " + GROUNDINGDINO_PY_HINT,
        purpose=f"The groundingdino-py backend ({what})",
    )
    import transformers

    if transformers_major() >= 5:
        raise RewardUnavailableError(
            f"groundingdino-py is installed but cannot build its model on transformers "
            f"{transformers.__version__} (it needs transformers < 5; ComfyUI installs >= 5, and "
            f"downgrading would break the host). {what[0].upper() + what[1:]} cannot be used. "
            + GROUNDINGDINO_PY_HINT
        )


def groundingdino_py_usable() -> bool:
    """Whether the groundingdino-py backend can run here (see `check_groundingdino_py_usable`),
    so a node offers it only where it can."""
    try:
        check_groundingdino_py_usable()
    except RewardUnavailableError:
        return False
    return True


def load_groundingdino_py(
    checkpoint: str | Path | None,
    bert_folder: str | Path | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    shortest: int | None = None,
    longest: int | None = None,
    config_overrides: Mapping[str, Any] | None = None,
) -> GroundingDinoPy:
    """The original `groundingdino-py` backend: groundingdino_swint_ogc.pth + a local BERT folder.

    checkpoint: groundingdino_swint_ogc.pth ({'model': state_dict}; loaded weights-only)
    bert_folder: a local transformers folder of bert-base-uncased (the package's builder
        would otherwise fetch it from the hub; this pack never does)
    shortest / longest: resize of the detector input (default 800 / 1333, as the package's
        own inference)
    config_overrides: entries of the package's GroundingDINO_SwinT_OGC.py to replace (for
        tests and custom checkpoints; the official file needs none)

    Raises RewardUnavailableError where the package or its model code's dependencies are
    missing, or where transformers >= 5 (the package cannot build its model there; ComfyUI
    installs >= 5); RewardLoadError naming the file for a missing, unsafe or mismatched
    checkpoint or BERT folder; ValueError for a shortest side too small for the queries.
    """
    check_groundingdino_py_usable(f"checkpoint {checkpoint}")
    if checkpoint is None:
        raise ValueError("the groundingdino-py backend needs checkpoint (groundingdino_swint_ogc.pth), got None")
    if bert_folder is None:
        raise ValueError(
            "the groundingdino-py backend needs bert_folder (a local transformers folder of "
            "bert-base-uncased: config.json, model.safetensors, vocab.txt), got None"
        )
    _, _, nested_tensor, _ = _package_modules()  # a broken install fails before any file is read
    num_queries = int(swint_ogc_args(Path(bert_folder), config_overrides).num_queries)
    least = min_shortest_side(num_queries)
    if shortest is not None and shortest < least:
        raise ValueError(
            f"shortest_side must be >= {least} for the groundingdino-py backend (its {num_queries} queries "
            f"are the top encoder positions, and a smaller input has fewer); got {shortest}")
    state = read_checkpoint(checkpoint)
    model = build_swint_ogc(bert_folder, config_overrides)
    load_weights(model, state, checkpoint)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return GroundingDinoPy(model, nested_tensor, shortest=shortest or 800, longest=longest or 1333)
