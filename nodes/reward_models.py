"""Reward model files in ComfyUI's model folders, and a small cache of loaded models.

Folder type `psi_rewards` (models/psi_rewards, plus any `psi_rewards:` entry of an
extra-model-paths yaml) is registered when this module is imported. Inside it:

* model folders: sub-folders holding a transformers `config.json` (or tokenizer
  files), listed by relative path and filtered by the config's `model_type`
  (CLIP: "clip"/"clip_vision_model"; Grounding DINO: "grounding-dino");
* weight files (.safetensors .pth .pt .bin .ckpt) and .json files outside model
  folders, listed by relative path (e.g. the aesthetic head file).

Loaded models are kept in a module-level cache keyed by path, file signatures
(modification time and size) and options, so a second prompt (or a second reward
node on the same model) does not reload them. Everything is loaded outside
inference mode, on the CPU, with `local_files_only` (never downloaded): the host
package moves weights to the compute device for a run (`modules()`/`to()`) and back.
Rewards are built outside inference mode too, so the tensors they keep (target
boxes, token masks, text embeddings) can take part in gradient passes.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..rewards.aesthetic import CLIP_L14_SOURCE, HEAD_SOURCE, AestheticHead, load_aesthetic_head, load_clip_vision
from ..rewards.clip import ClipImageEmbedder
from ..rewards.grounding import GROUNDING_DINO_SOURCE, PhraseDetector, TransformersGroundingDino, load_grounding_dino
from ..rewards.grounding_py import BERT_SOURCE, GROUNDINGDINO_PY_SOURCE, load_groundingdino_py
from ..rewards.heldout import PICKSCORE_PROCESSOR_SOURCE, PICKSCORE_SOURCE
from ..rewards.loading import (RewardLoadError, RewardUnavailableError, WeightsSource, check_model_folder,
                               from_pretrained_local, import_optional, read_json)
from ..rewards.preprocess import CLIP_MEAN, CLIP_STD
from ..rewards.quantity import T2ICOUNT_SOURCE
from ..comfy_host.folders import model_folder_paths, register_model_folder
from ..comfy_host.t2icount import load_t2icount_model

LOG = logging.getLogger("psi_sampler")
FOLDER = "psi_rewards"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
MAX_DEPTH = 4
CLIP_TYPES = ("clip", "clip_vision_model")
GROUNDING_DINO_TYPES = ("grounding-dino",)
BERT_TYPES = ("bert",)
GROUNDING_DINO_FILES = ("vocab.txt|tokenizer.json",)  # besides config and weights
_FOLDER_MARKERS = ("config.json", "tokenizer.json", "tokenizer_config.json")


def register_folder() -> None:
    """Register models/psi_rewards as the `psi_rewards` folder type (idempotent: a
    repeated import, or a yaml entry made first, leaves one entry per path)."""
    register_model_folder(FOLDER)


register_folder()


def roots() -> list[Path]:
    """Every directory of the `psi_rewards` folder type, in search order."""
    return model_folder_paths(FOLDER)


def describe_roots() -> str:
    return ", ".join(str(r) for r in roots()) or f"models/{FOLDER}"


# --------------------------------------------------------------------------- scanning


@dataclass(frozen=True)
class ModelFolder:
    """A transformers-style folder: relative name, absolute path, config model_type, file names."""

    name: str
    path: Path
    model_type: str | None
    files: frozenset[str]

    def has_tokenizer(self) -> bool:
        return "tokenizer.json" in self.files or {"vocab.json", "merges.txt"} <= self.files


@dataclass(frozen=True)
class Listing:
    folders: dict[str, ModelFolder]
    files: dict[str, Path]


SCAN_TTL_S = 1.0
_last_scan: tuple[float, tuple, Listing] | None = None


def scan() -> Listing:
    """Model folders and loose files under every psi_rewards root (first root wins on
    equal names; hidden directories skipped; at most MAX_DEPTH levels deep). One request
    builds several schemas and validations, so a listing is reused for SCAN_TTL_S seconds."""
    global _last_scan
    now, where = time.monotonic(), tuple(roots())
    if _last_scan is not None and _last_scan[1] == where and now - _last_scan[0] < SCAN_TTL_S:
        return _last_scan[2]
    listing = _scan(where)
    _last_scan = (now, where, listing)
    return listing


def _scan(where: tuple[Path, ...]) -> Listing:
    folders: dict[str, ModelFolder] = {}
    files: dict[str, Path] = {}
    for root in where:
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            here = Path(dirpath)
            rel = here.relative_to(root)
            names = frozenset(filenames)
            if rel.parts and any(marker in names for marker in _FOLDER_MARKERS):
                config = read_json(here / "config.json") or {}
                model_type = config.get("model_type")
                folders.setdefault(rel.as_posix(), ModelFolder(rel.as_posix(), here, model_type, names))
                dirnames[:] = []
                continue
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if len(rel.parts) < MAX_DEPTH else []
            for name in filenames:
                if name.lower().endswith(WEIGHT_SUFFIXES + (".json",)) and not name.startswith("."):
                    files.setdefault((rel / name).as_posix(), here / name)
    return Listing(folders, files)


def folder_choices(model_types: Iterable[str] | None = None, tokenizer: bool = False) -> list[str]:
    """Names of model folders whose model_type is one of `model_types` (any where None),
    or, with `tokenizer`, that hold tokenizer files."""
    types = None if model_types is None else set(model_types)
    chosen = []
    for name, folder in scan().folders.items():
        if tokenizer and not folder.has_tokenizer():
            continue
        if types is not None and folder.model_type not in types:
            continue
        chosen.append(name)
    return sorted(chosen, key=str.lower)


def file_choices(suffixes: tuple[str, ...] = WEIGHT_SUFFIXES) -> list[str]:
    return sorted((name for name in scan().files if name.lower().endswith(suffixes)), key=str.lower)


#: the only choice of a list with nothing suitable in psi_rewards (selecting it explains what to add)
NOTHING_FOUND = f"(nothing found in models/{FOLDER})"


def default_choice(choices: list[str], preferred: str | None = None) -> str | None:
    """`preferred` (or the first choice whose base name is it) where listed, else the first choice."""
    if preferred is not None:
        for choice in choices:
            if choice == preferred or choice.rsplit("/", 1)[-1] == preferred:
                return choice
    return choices[0] if choices else None


def resolve_folder(name: str, source: WeightsSource) -> Path:
    """The absolute path of model folder `name`, or ValueError naming the folder type,
    where it was looked for, what is expected and where to get it."""
    if not isinstance(name, str) or not name or name == NOTHING_FOUND:
        raise ValueError(source.message("no model folder selected (none found)", describe_roots()))
    folder = scan().folders.get(name)
    if folder is None:
        raise ValueError(source.message(f"no model folder {name!r} in the {FOLDER} model folder",
                                        describe_roots()))
    return folder.path


def resolve_file(name: str, source: WeightsSource) -> Path:
    """The absolute path of weights file `name` in psi_rewards, or ValueError (as resolve_folder)."""
    if not isinstance(name, str) or not name or name == NOTHING_FOUND:
        raise ValueError(source.message("no file selected (none found)", describe_roots()))
    path = scan().files.get(name)
    if path is None:
        raise ValueError(source.message(f"no file {name!r} in the {FOLDER} model folder", describe_roots()))
    return path


def check_folder(name: str, source: WeightsSource, need: tuple[str, ...] = ()) -> Path:
    """resolve_folder, then the folder's files (config, weights, `need`) as ValueError."""
    path = resolve_folder(name, source)
    try:
        return check_model_folder(path, source, need)
    except RewardLoadError as err:
        raise ValueError(str(err)) from None


def signature(path: Path) -> tuple:
    """What identifies a file's or folder's current content cheaply (names, mtimes, sizes)."""
    def stat(p: Path) -> tuple:
        try:
            s = p.stat()
        except OSError:
            return (p.name, None, None)
        return (p.name, s.st_mtime_ns, s.st_size)

    if path.is_dir():
        return (str(path), tuple(stat(p) for p in sorted(path.iterdir()) if p.is_file()))
    return (str(path), stat(path))


def fingerprint(folders: Iterable[str] = (), files: Iterable[str] = ()) -> str:
    """A string that changes when any selected folder or file changes on disk (for
    `fingerprint_inputs`); never raises."""
    try:
        listing = scan()
        parts = [signature(listing.folders[n].path) if n in listing.folders else (n, None) for n in folders]
        parts += [signature(listing.files[n]) if n in listing.files else (n, None) for n in files]
    except OSError:
        return ""
    return repr(parts)


# --------------------------------------------------------------------------- cache


class ModelCache:
    """A small least-recently-used cache of loaded models."""

    def __init__(self, size: int = 4):
        self.size = int(size)
        self._items: OrderedDict[tuple, Any] = OrderedDict()

    def get(self, key: tuple, build: Callable[[], Any]) -> Any:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = build()
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


CACHE = ModelCache()


def _cached(kind: str, path: Path, options: tuple, load: Callable[[], Any]) -> Any:
    def build():
        LOG.info("psi: loading %s from %s", kind, path)
        with torch.inference_mode(False):
            return load()

    return CACHE.get((kind, signature(path), options), build)


def outside_inference(build: Callable[[], Any]) -> Any:
    """Run `build` with inference mode off (rewards keep tensors used in gradient passes)."""
    with torch.inference_mode(False):
        return build()


# --------------------------------------------------------------------------- loaders


def aesthetic_head(name: str) -> AestheticHead:
    path = resolve_file(name, HEAD_SOURCE)
    return _cached("aesthetic_head", path, (), lambda: load_aesthetic_head(path))


def clip_vision_embedder(name: str) -> ClipImageEmbedder:
    """A frozen CLIPVisionModelWithProjection (from a CLIPModel or vision-only folder)."""
    path = check_folder(name, CLIP_L14_SOURCE)
    return _cached("clip_vision", path, (), lambda: load_clip_vision(path))


def clip_input_size(embedder: ClipImageEmbedder) -> int:
    return int(getattr(embedder.model.config, "image_size", 224))


def grounding_dino(name: str, shortest_side: int = 0) -> TransformersGroundingDino:
    """Grounding DINO from folder `name` (one copy of the weights per folder); a
    `shortest_side` > 0 overrides the folder's detector input size."""
    path = check_folder(name, GROUNDING_DINO_SOURCE, need=GROUNDING_DINO_FILES)
    base = _cached("grounding_dino", path, (), lambda: load_grounding_dino(path))
    if not shortest_side or int(shortest_side) == base.shortest:
        return base
    return TransformersGroundingDino(base.model, base.tokenizer, shortest=int(shortest_side),
                                     longest=max(base.longest, int(shortest_side)), mean=base.mean, std=base.std)


def groundingdino_py(checkpoint: str, bert_folder: str, shortest_side: int = 0) -> PhraseDetector:
    """The groundingdino-py detector from file `checkpoint` and BERT folder `bert_folder`
    (cached per checkpoint, folder and input size)."""
    path = resolve_file(checkpoint, GROUNDINGDINO_PY_SOURCE)
    bert = resolve_folder(bert_folder, BERT_SOURCE)
    return _cached("groundingdino-py", path, (signature(bert), int(shortest_side or 0)),
                   lambda: load_groundingdino_py(path, bert, shortest=int(shortest_side) or None))


def t2icount(checkpoint: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(UNet, counting head) of T2ICount from file `checkpoint` (cached per file)."""
    path = resolve_file(checkpoint, T2ICOUNT_SOURCE)
    return _cached("t2icount", path, (), lambda: load_t2icount_model(path))


@dataclass(frozen=True)
class ClipWithTokenizer:
    """A frozen transformers CLIPModel, its tokenizer and the image preprocessing it expects."""

    model: torch.nn.Module
    tokenizer: Any
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _load_clip_with_tokenizer(model_path: Path, processor_path: Path) -> ClipWithTokenizer:
    from transformers import AutoTokenizer, CLIPModel

    model = from_pretrained_local(CLIPModel, model_path, PICKSCORE_SOURCE)
    model.eval().requires_grad_(False)
    tokenizer = from_pretrained_local(AutoTokenizer, processor_path, PICKSCORE_PROCESSOR_SOURCE)
    prep = read_json(processor_path / "preprocessor_config.json") or {}
    crop = prep.get("crop_size")
    size = crop.get("height") if isinstance(crop, dict) else crop
    size = int(size or model.config.vision_config.image_size)
    return ClipWithTokenizer(model, tokenizer, size, tuple(prep.get("image_mean", CLIP_MEAN)),
                             tuple(prep.get("image_std", CLIP_STD)))


def clip_with_tokenizer(model_name: str, processor_name: str | None) -> ClipWithTokenizer:
    """PickScore's CLIPModel (folder `model_name`) with the tokenizer and preprocessing of
    `processor_name` (None: the model folder itself)."""
    model_path = check_folder(model_name, PICKSCORE_SOURCE)
    processor = scan().folders.get(processor_name or model_name)
    if processor is None:
        raise ValueError(PICKSCORE_PROCESSOR_SOURCE.message(
            f"no folder {processor_name!r} in the {FOLDER} model folder", describe_roots()))
    if not processor.has_tokenizer():
        raise ValueError(PICKSCORE_PROCESSOR_SOURCE.message("no tokenizer files", processor.path))
    return _cached("pickscore", model_path, (str(processor.path), signature(processor.path)),
                   lambda: _load_clip_with_tokenizer(model_path, processor.path))


# --------------------------------------------------------------------------- optional packages


def missing_package(module: str, hint: str, purpose: str) -> str | None:
    """The reward package's "install X" message where `module` is not installed, else None
    (checked without importing it)."""
    if importlib.util.find_spec(module) is not None:
        return None
    try:
        import_optional(module, hint, purpose)
    except RewardUnavailableError as err:
        return str(err)
    return None
