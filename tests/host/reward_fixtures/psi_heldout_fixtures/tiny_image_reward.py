"""A tiny random ImageReward in the released file's layout, for tests (plain Python, no ComfyUI imports).

`save_tiny_image_reward(folder, seed)` writes what the ImageReward loader reads:
* ImageReward.pt: `blip.visual_encoder.*` in image-reward's (timm ViT) names,
  `blip.text_encoder.*` in BLIP med.py's names with its stored `embeddings.position_ids`
  buffer, `mlp.layers.*`, and BLIP's projection `blip.vision_proj.*`, which scoring ignores;
* med_config.json: BLIP's fields with the sizes scaled down (ImageReward's MLP fixes the
  text width at 768);
* vocab.txt: a BERT-style vocabulary with the test prompts' words.
The tensors are made with transformers' BLIP classes at a tiny size (a 32x32 ViT of width
64, one 64-wide head) and renamed with the loader's own table, with layer norms, biases and
the MLP randomised so that every tensor matters. The loader's equality with image-reward's
own score() is tested in tests/rewards/test_heldout_packages.py; this file only feeds tests
that need a loadable file (the node on a host, the loader's checks).
"""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ["a", "red", "cat", "on", "the", "table", "blue", "dog"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
#: BLIP's med_config.json with the sizes scaled down; vocab_size counts the [DEC] and [ENC] tokens BLIP adds
MED_CONFIG = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 64,
              "layer_norm_eps": 1e-12, "max_position_embeddings": 40, "model_type": "bert",
              "num_attention_heads": 12, "num_hidden_layers": 1, "pad_token_id": 0, "type_vocab_size": 2,
              "vocab_size": len(VOCAB) + 2, "encoder_width": 768, "add_cross_attention": True}
VISION = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1, image_size=32,
              patch_size=16, hidden_act="gelu", layer_norm_eps=1e-6, initializer_range=0.02)  # its default is 1e-10


def tiny_image_reward_state(seed: int = 0) -> dict:
    """{name: tensor} in ImageReward.pt's layout (see the module docstring)."""
    import torch
    from transformers import BlipTextModel, BlipVisionConfig, BlipVisionModel

    from psi_sampler.rewards.aesthetic import AestheticHead
    from psi_sampler.rewards.image_reward import rename_vision_key, text_config

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vision = BlipVisionModel(BlipVisionConfig(**VISION))
        text = BlipTextModel(text_config(MED_CONFIG, VISION["hidden_size"], "med_config.json"),
                             add_pooling_layer=False)
        head = AestheticHead()
        state = {}
        to_package = lambda name: rename_vision_key(name, to_transformers=False)  # noqa: E731
        for prefix, module, rename in (("blip.visual_encoder.", vision, to_package),
                                       ("blip.text_encoder.", text, str), ("mlp.", head, str)):
            for name, tensor in module.state_dict().items():
                tensor = tensor.clone()
                if prefix == "mlp.":
                    tensor.normal_(0.0, 0.08)
                elif "norm" in name.lower() and name.endswith("weight"):
                    tensor.normal_(1.0, 0.1)
                elif name.endswith("bias"):
                    tensor.normal_(0.0, 0.02)
                state[prefix + rename(name)] = tensor
        state["blip.text_encoder.embeddings.position_ids"] = torch.arange(MED_CONFIG["max_position_embeddings"])[None]
        state["blip.vision_proj.weight"] = torch.randn(256, VISION["hidden_size"])
        state["blip.vision_proj.bias"] = torch.zeros(256)
    return state


def save_tiny_image_reward(folder: str | Path, seed: int = 0, checkpoint: str = "ImageReward.pt") -> Path:
    """Write `checkpoint`, med_config.json and vocab.txt into `folder`; returns the checkpoint's path."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_image_reward_state(seed), folder / checkpoint)
    (folder / "med_config.json").write_text(json.dumps(MED_CONFIG))
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return folder / checkpoint
