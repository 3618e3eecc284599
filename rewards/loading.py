"""Safe loading of reward weights from explicit paths, with clear error messages.

Nothing here downloads: weights come only from the files and folders the caller
names (the ComfyUI node layer resolves its model folders and passes paths in).
State dicts load from safetensors, or from a pickle through
`torch.load(weights_only=True)`, which refuses any pickle that would import or
call code. transformers folders load with `local_files_only=True`, preferring
safetensors where the folder has them.
"""

from __future__ import annotations

import importlib
import io
import json
import pickle
import pickletools
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


class RewardLoadError(RuntimeError):
    """A weights file or model folder is missing, unreadable, unsafe or of the wrong kind."""


class RewardUnavailableError(RuntimeError):
    """A reward backend cannot run here (package missing, incompatible, or not provided)."""


@dataclass(frozen=True)
class WeightsSource:
    """What a loader expects and where the paper's authors got it (for error messages).

    expected: file or folder layout the loader wants, e.g. "model.safetensors + config.json"
    origin: where to get it, e.g. "Hugging Face repo openai/clip-vit-large-patch14"
    """

    what: str
    expected: str
    origin: str

    def message(self, problem: str, location: str | Path) -> str:
        return (
            f"{self.what}: {problem}\n"
            f"  looked in: {location}\n"
            f"  expected: {self.expected}\n"
            f"  where to get it: {self.origin}"
        )


STATE_DICT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


def load_state_dict(path: str | Path, source: WeightsSource) -> dict[str, torch.Tensor]:
    """Load a flat {name: tensor} state dict from a safetensors or weights-only pickle file
    (a pickle may wrap it under "state_dict" or "model", as training scripts save it).

    Raises RewardLoadError naming the file, what was expected and where to get it
    when the file is missing, unreadable, or its pickle would run code.
    """
    path = Path(path)
    if not path.is_file():
        raise RewardLoadError(source.message("file not found", path))
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as err:
            raise RewardLoadError(
                source.message(f"not a valid safetensors file ({err})", path)
            ) from err
    else:
        state = _load_weights_only_pickle(path, source)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RewardLoadError(
            source.message("the file holds no {name: tensor} state dict", path)
        )
    return state


_SAFE_GLOBAL_PREFIXES = ("torch.", "collections.OrderedDict", "_codecs.encode", "numpy.")


def pickle_globals(path: Path) -> list[str]:
    """Names of the callables a pickle (plain or inside a torch zip) would import.

    Reads the opcodes with pickletools; nothing is executed.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(member) if member else b""
        else:
            data = path.read_bytes()
    except (OSError, zipfile.BadZipFile):
        return []
    names: list[str] = []
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            if opcode.name in ("GLOBAL", "INST") and isinstance(arg, str):
                names.append(arg.replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            if isinstance(arg, str):
                strings.append(arg)
    except (ValueError, EOFError, pickle.UnpicklingError):
        pass
    return names


def _load_weights_only_pickle(path: Path, source: WeightsSource) -> Any:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = [n for n in pickle_globals(path) if not n.startswith(_SAFE_GLOBAL_PREFIXES)]
        if unsafe:
            problem = (
                f"refused to unpickle: the file asks to import or call {sorted(set(unsafe))[:5]}, "
                "which a weights file never needs (it may be malicious, or a whole pickled "
                "model object); nothing from it was run. Use a safetensors or plain "
                "state-dict file"
            )
        else:
            problem = f"not a readable PyTorch weights file ({str(err).splitlines()[0][:200]})"
        raise RewardLoadError(source.message(problem, path)) from err
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise RewardLoadError(
            source.message(f"not a readable PyTorch weights file ({err})", path)
        ) from err


def check_state_dict_shapes(
    state: dict[str, torch.Tensor],
    expected: dict[str, tuple[int, ...]],
    path: str | Path,
    source: WeightsSource,
) -> None:
    """Raise RewardLoadError unless `state` has exactly the expected keys and shapes."""
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k}: {tuple(state[k].shape)} (want {shape})"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != shape
    )
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:6]}")
        if extra:
            parts.append(f"unexpected keys {extra[:6]}")
        if wrong:
            parts.append(f"wrong shapes {wrong[:6]}")
        raise RewardLoadError(source.message("wrong file: " + "; ".join(parts), path))


# ---------------------------------------------------------------------------
# transformers folders

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


def check_model_folder(folder: str | Path, source: WeightsSource, need: tuple[str, ...] = ()) -> Path:
    """Check a transformers model folder has config.json, weights and the files in `need`.

    `need` entries may be alternatives separated by "|" (e.g. "vocab.txt|tokenizer.json").
    Returns the folder as a Path; raises RewardLoadError naming what is missing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RewardLoadError(source.message("folder not found", folder))
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        missing.append("model.safetensors (or pytorch_model.bin)")
    for alternatives in need:
        if not any((folder / name).is_file() for name in alternatives.split("|")):
            missing.append(alternatives.replace("|", " or "))
    if missing:
        raise RewardLoadError(source.message(f"missing {', '.join(missing)}", folder))
    return folder


def from_pretrained_local(cls: Any, folder: str | Path, source: WeightsSource, **kwargs: Any) -> Any:
    """`cls.from_pretrained(folder, local_files_only=True)`, safetensors preferred.

    Wraps transformers' errors (wrong architecture, unreadable files) into RewardLoadError.
    """
    folder = Path(folder)
    if any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").is_file():
        kwargs.setdefault("use_safetensors", True)
    try:
        return cls.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as err:
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise RewardLoadError(
            source.message(f"could not load as {getattr(cls, '__name__', cls)} ({first})", folder)
        ) from err


def read_json(path: str | Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None where the file is absent or not a JSON object."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------------------
# optional packages


def import_optional(module: str, install_hint: str, purpose: str) -> Any:
    """Import an optional package or raise RewardUnavailableError with an install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise RewardUnavailableError(
            f"{purpose} needs the Python package `{module}`, which is not installed "
            f"({err}). {install_hint}"
        ) from err


def transformers_major() -> int:
    """Major version of the installed transformers."""
    import transformers

    match = re.match(r"(\d+)", transformers.__version__)
    return int(match.group(1)) if match else 0


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Put a weight module in eval mode with no weight gradients; returns it."""
    module.eval()
    module.requires_grad_(False)
    return module
