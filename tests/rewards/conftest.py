"""Fixtures for the reward tests: tiny random models of the real architectures, built once.

The helpers live in rewards_testing.py (this folder is put on sys.path so test modules
can import it under --import-mode=importlib).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rewards_testing import (  # noqa: E402
    make_bert_tokenizer,
    make_clip_tokenizer,
    seeded,
    tiny_clip_config,
    tiny_grounding_dino_config,
)


@pytest.fixture(scope="session")
def tiny_grounding_dino():
    """(model, tokenizer): random tiny GroundingDinoForObjectDetection, frozen, eval."""
    from transformers import GroundingDinoForObjectDetection

    with seeded(0):
        model = GroundingDinoForObjectDetection(tiny_grounding_dino_config()).eval().requires_grad_(False)
        # DETR-style init zeroes the last box layer (boxes = anchors, no gradient); give it weights
        for name, module in model.named_modules():
            if "bbox_embed" in name and isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=0.1)
    return model, make_bert_tokenizer()


@pytest.fixture(scope="session")
def tiny_clip_vision():
    """Random tiny CLIPVisionModelWithProjection with projection_dim 768 (fits the real head)."""
    from transformers import CLIPVisionModelWithProjection

    with seeded(1):
        model = CLIPVisionModelWithProjection(tiny_clip_config().vision_config).eval()
    return model.requires_grad_(False)


@pytest.fixture(scope="session")
def tiny_clip_model():
    """(CLIPModel, CLIPTokenizer): random tiny CLIP for PickScore."""
    from transformers import CLIPModel

    with seeded(2):
        model = CLIPModel(tiny_clip_config(projection_dim=16)).eval().requires_grad_(False)
    return model, make_clip_tokenizer()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One loud line per optional-backend interpreter that is not configured."""
    from external_python import PURPOSE, external_python, skip_line

    for var in PURPOSE:
        _, reason = external_python(var)
        if reason is not None:
            terminalreporter.write_line(skip_line(var, reason), red=True, bold=True)
