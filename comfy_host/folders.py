"""ComfyUI's model folders (the reward weights' folder type) and its output folder."""

from __future__ import annotations

import os
from pathlib import Path

import folder_paths


def register_model_folder(folder_type: str) -> None:
    """Register models/`folder_type` as a model folder type (idempotent: a repeated call,
    or an extra-model-paths yaml entry made first, leaves one entry per path)."""
    folder_paths.add_model_folder_path(folder_type, os.path.join(folder_paths.models_dir, folder_type))


def model_folder_paths(folder_type: str) -> list[Path]:
    """Every directory of the model folder type `folder_type`, in ComfyUI's search order."""
    return [Path(p) for p in folder_paths.get_folder_paths(folder_type)]


def output_directory() -> str:
    """ComfyUI's output folder (where Save Image writes)."""
    return folder_paths.get_output_directory()
