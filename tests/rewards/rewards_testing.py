"""Helpers for the reward tests and the CPU benchmark runner: tiny random configurations
of the real architectures, synthetic tokenizers, batch and gradient checks.

Models are built under a forked, seeded RNG so the tests use no global randomness.
(A plain module, imported by name: tests/rewards/conftest.py puts this folder on sys.path.)
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
import warnings
from pathlib import Path

import torch

HEAD_PATH = Path(__file__).resolve().parents[3] / "shared/data/psi_official/sac+logos+ava1-l14-linearMSE.pth"

# BERT-style vocabulary with the ids Grounding DINO treats as special ([CLS] 101, [SEP] 102, '.' 1012, '?' 1029)
_WORDS = ["cat", "dog", "horse", "a", "red", "car", "eggs", "apple", "on", "the", "big", "table"]


@contextlib.contextmanager
def seeded(seed: int):
    """Fork the CPU RNG and seed it for the block (no global randomness leaks)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def bert_vocab() -> dict[str, int]:
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [f"filler{i}" for i in range(1012 - len(tokens))]
    tokens += [".", ","] + [f"filler_b{i}" for i in range(1029 - 1014)] + ["?"] + _WORDS
    return {t: i for i, t in enumerate(tokens)}


def image_reward_package() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """(ImageReward, vit, med): image-reward's own scoring module and BLIP network modules,
    loaded as the private package `_ir_pkg` without the package's `__init__` (which needs
    diffusers, datasets, accelerate and openai clip for parts unrelated to scoring);
    `sys.modules["ImageReward"]` is left alone. Needs image-reward installed."""
    root = Path(importlib.util.find_spec("ImageReward").submodule_search_locations[0])
    for name, path in (("_ir_pkg", root), ("_ir_pkg.models", root / "models")):
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules[name] = module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image_reward = importlib.import_module("_ir_pkg.ImageReward")
    return (image_reward, importlib.import_module("_ir_pkg.models.BLIP.vit"),
            importlib.import_module("_ir_pkg.models.BLIP.med"))


def blip_stand_in(vit, med, med_config: Path, *, patch_size: int, embed_dim: int, depth: int, num_heads: int,
                  tokenizer=None) -> type:
    """A class to put in place of image-reward's BLIP_Pretrain, built from the package's own
    ViT and BERT classes at the given size (BLIP_Pretrain's create_vit makes only ViT-B/L, and
    its init_tokenizer downloads bert-base-uncased)."""

    class BlipStandIn(torch.nn.Module):
        def __init__(self, **kwargs):
            super().__init__()
            self.visual_encoder = vit.VisionTransformer(img_size=224, patch_size=patch_size, embed_dim=embed_dim,
                                                        depth=depth, num_heads=num_heads)
            config = med.BertConfig.from_json_file(str(med_config))
            config.encoder_width = embed_dim
            self.text_encoder = med.BertModel(config=config, add_pooling_layer=False)
            if tokenizer is not None:
                self.tokenizer = tokenizer

    return BlipStandIn


def make_bert_tokenizer():
    from transformers import BertTokenizer

    return BertTokenizer(vocab=bert_vocab())


def make_clip_tokenizer():
    from transformers import CLIPTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["<|startoftext|>", "<|endoftext|>"] + letters + [f"{c}</w>" for c in letters] + ["!", "!</w>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[])


def tiny_grounding_dino_config():
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    backbone = SwinConfig(
        image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
        window_size=4, out_indices=[2, 3, 4],
    )
    text = BertConfig(
        vocab_size=len(bert_vocab()), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    return GroundingDinoConfig(
        backbone_config=backbone, text_config=text, d_model=32, num_queries=24, encoder_layers=1,
        decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
        decoder_attention_heads=2, num_feature_levels=4, encoder_n_points=2, decoder_n_points=2,
        max_text_len=32,
    )


def tiny_clip_config(projection_dim: int = 768):
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config=dict(vocab_size=60, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         projection_dim=projection_dim, num_attention_heads=2, max_position_embeddings=77,
                         eos_token_id=1, bos_token_id=0, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=projection_dim),
        projection_dim=projection_dim,
    )


def rand_images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=gen)


def assert_batch_equals_single(reward, images: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """Scores of the batch == scores of its images one at a time."""
    together = reward(images)
    alone = torch.cat([reward(images[i : i + 1]) for i in range(images.shape[0])])
    assert together.shape == (images.shape[0],)
    assert together.dtype == torch.float32
    torch.testing.assert_close(together, alone, atol=atol, rtol=rtol)


def input_gradient(reward, images: torch.Tensor) -> torch.Tensor:
    """d sum(scores) / d images, checked finite and non-zero."""
    x = images.clone().requires_grad_(True)
    reward(x).sum().backward()
    grad = x.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert grad.abs().sum() > 0
    return grad
