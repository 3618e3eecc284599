"""T2ICount counting head, checkpoint reader and reward, with small stand-ins for the host's
SD1.5 VAE encoder and UNet (the host test runs ComfyUI's real classes)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from rewards_testing import assert_batch_equals_single, input_gradient, rand_images, seeded

from psi_sampler.rewards.loading import RewardLoadError
from psi_sampler.rewards.t2icount import (DENSITY_PER_OBJECT, HEAD_PREFIX, UNET_PREFIX, CountHead, T2ICountReward,
                                          phrase_token_mask, read_t2icount_checkpoint)
from psi_sampler.rewards.targets import CountTarget

TINY_WIDTHS, TINY_TEXT, TINY_OUT = (16, 32, 64, 64), 24, 16
TOKENS = 7


def authors_layout(widths, text_dim, out_dim) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the authors' Decoder(in_dim=widths, out_dim), written out from
    models/decoder.py and models/reg_model.py of github.com/cha15yq/T2ICount."""
    w0, w1, w2, w3 = widths
    shapes: dict[str, tuple[int, ...]] = {}

    def linear(name, cin, cout):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin), (cout,)

    def conv(name, cin, cout, k=3, groups=1):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin // groups, k, k), (cout,)

    def norm(name, dim):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (dim,), (dim,)

    def attention(name, dim):
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            linear(f"{name}.{proj}", dim, dim)

    def upsample(name, up_in, up_out, cat_in, cat_out, sem=True):
        conv(f"{name}.conv1.0", up_in, up_out)
        conv(f"{name}.conv2.0", cat_in, cat_out)
        if sem:
            linear(f"{name}.text_conv", text_dim, cat_out)
            norm(f"{name}.norm1", cat_out)
            for fusion in ("img_txt_fusion1", "img_txt_fusion2"):
                conv(f"{name}.{fusion}.img_pe_transform", cat_out, cat_out, groups=cat_out)
                attention(f"{name}.{fusion}.txt2img", cat_out)
                norm(f"{name}.{fusion}.norm1", cat_out)
                linear(f"{name}.{fusion}.mlp.net.0.0", cat_out, 4 * cat_out)
                linear(f"{name}.{fusion}.mlp.net.2", 4 * cat_out, cat_out)
                norm(f"{name}.{fusion}.norm2", cat_out)
                attention(f"{name}.{fusion}.img2txt", cat_out)
                norm(f"{name}.{fusion}.norm3", cat_out)
            conv(f"{name}.conv3.0", cat_out, cat_out)

    upsample("upsample1", w3, w3 // 2, w3 // 2 + w2, w3 // 2)
    upsample("upsample2", w3 // 2, w3 // 4, w3 // 4 + w1, w3 // 4)
    upsample("upsample3", w3 // 4, out_dim, out_dim + w0, out_dim, sem=False)
    conv("regressor.conv.0", out_dim, out_dim)
    for i in (1, 2):
        conv(f"regressor.img_pe_transform{i}", out_dim, out_dim, groups=out_dim)
        attention(f"regressor.self_attn{i}", out_dim)
        norm(f"regressor.norm{i}", out_dim)
    conv("regressor.reg_head.0", out_dim, out_dim)
    conv("regressor.reg_head.2", out_dim, 128)
    conv("regressor.reg_head.4", 128, 1, k=1)
    return shapes


@pytest.mark.parametrize("dims", [((320, 640, 1280, 1280), 768, 256), (TINY_WIDTHS, TINY_TEXT, TINY_OUT)])
def test_head_keys_and_shapes_are_the_authors(dims):
    expected = authors_layout(*dims)
    assert CountHead.expected_shapes(*dims) == expected
    assert CountHead.dims_from_state({k: torch.empty(s, device="meta") for k, s in expected.items()}) == dims
    if dims[0][0] == 320:
        assert sum(torch.Size(s).numel() for s in expected.values()) == 48_903_425  # the SD1.5 head's size


#: small test images: 128² -> 16² latents (the authors' 384² gives 48²; the head works at any multiple of 64)
SIZE = 128
SIDE = SIZE // 8


def tiny_head(seed: int = 0) -> CountHead:
    with seeded(seed):
        head = CountHead(TINY_WIDTHS, TINY_TEXT, TINY_OUT).eval().requires_grad_(False)
        head.regressor.reg_head[4].bias.fill_(0.02)  # a positive density on part of the map (ReLU output)
    return head


def random_features(batch: int, seed: int = 0, side: int = SIDE) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, w, side >> i, side >> i, generator=gen) for i, w in enumerate(TINY_WIDTHS)]


def test_head_density_shape_gradient_and_batch():
    head = tiny_head()
    features = [f.requires_grad_(True) for f in random_features(3)]
    text = torch.randn(3, TINY_TEXT, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    density = head(features, text)
    assert density.shape == (3, 1, SIDE, SIDE) and bool((density >= 0).all()) and bool((density > 0).any())
    density.sum().backward()
    for tensor in (*features, text):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0
    alone = torch.cat([head([f[i:i + 1].detach() for f in features], text[i:i + 1].detach()) for i in range(3)])
    torch.testing.assert_close(density.detach(), alone, atol=1e-5, rtol=1e-5)


class StandInSD(nn.Module):
    """Stand-ins for the host's parts: encode (a stride-8 convolution to 4 channels) and
    unet_features (convolutions to the four widths, shifted by the mean text state)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        with seeded(seed):
            self.encoder = nn.Conv2d(3, 4, 8, stride=8)
            self.levels = nn.ModuleList(nn.Conv2d(4, w, 3, padding=1) for w in TINY_WIDTHS)
            self.text = nn.ModuleList(nn.Linear(TINY_TEXT, w) for w in TINY_WIDTHS)
        self.requires_grad_(False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        assert -1.0 - 1e-6 <= float(x.detach().min()) and float(x.detach().max()) <= 1.0 + 1e-6  # [-1, 1] input
        return self.encoder(x)

    def unet_features(self, latents: torch.Tensor, context: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, (conv, text) in enumerate(zip(self.levels, self.text)):
            level = F.avg_pool2d(latents, 2 ** i) if i else latents
            out.append(torch.tanh(conv(level) + text(context.mean(dim=1))[:, :, None, None]))
        return out


def contexts_and_masks(k: int, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    masks = torch.zeros(k, TOKENS)
    for i in range(k):
        masks[i, 1:2 + i] = 1.0
    return torch.randn(k, TOKENS, TINY_TEXT, generator=gen), masks


def tiny_reward(objects=("apple", "pear"), counts=(3, 0), head: CountHead | None = None) -> T2ICountReward:
    sd = StandInSD()
    contexts, masks = contexts_and_masks(len(objects))
    return T2ICountReward(head or tiny_head(), sd.encode, sd.unet_features, contexts, masks,
                          CountTarget.build(list(objects), list(counts)), modules=[sd], image_size=SIZE)


def test_reward_is_minus_smooth_l1_of_counts_batchable_and_differentiable():
    reward = tiny_reward()
    images = rand_images(3, 96, 80, seed=2)
    counts = reward.counts(images)
    assert counts.shape == (3, 2) and bool((counts >= 0).all())
    expected = -F.smooth_l1_loss(counts, torch.tensor([[3.0, 0.0]]).expand(3, 2), reduction="none", beta=1.0).sum(1)
    torch.testing.assert_close(reward(images), expected)
    assert_batch_equals_single(reward, images)
    input_gradient(reward, images)
    assert len(reward.modules()) == 2 and reward.memory_bytes() > 0


def test_reward_gradient_matches_finite_differences_in_float64():
    """Directional derivatives through resize, the stand-ins and the head (float64, where no
    ReLU of the head flips between the evaluations) against central differences."""
    head = tiny_head().double()
    sd = StandInSD().double()
    contexts, masks = contexts_and_masks(2)
    reward = T2ICountReward(head, sd.encode, sd.unet_features, contexts.double(), masks,
                            CountTarget.build(["apple", "pear"], [4, 1]), image_size=64)
    images = rand_images(2, 40, 36, seed=7).double()
    assert reward.counts(images).dtype == torch.float64
    x = images.clone().requires_grad_(True)
    reward.score(x).sum().backward()
    gen = torch.Generator().manual_seed(8)
    for direction in (x.grad, torch.randn(images.shape, generator=gen, dtype=torch.float64)):
        v = direction / direction.norm()
        with torch.no_grad():
            step = 1e-6
            difference = (reward.score(images + step * v) - reward.score(images - step * v)).sum() / (2 * step)
        torch.testing.assert_close(difference, (x.grad * v).sum(), rtol=1e-6, atol=1e-9)


def test_count_is_density_sum_over_60_and_grows_with_the_density():
    head = tiny_head()
    seen = []
    head.regressor.register_forward_hook(lambda module, args, out: seen.append(out.detach()))
    reward = tiny_reward(("apple",), (1,), head=head)
    images = rand_images(2, 64, 64, seed=5)
    counts = []
    for bias in (0.0, 0.05, 0.2):
        with torch.no_grad():
            head.regressor.reg_head[4].bias.fill_(bias)
        counts.append(reward.counts(images))
        torch.testing.assert_close(counts[-1][:, 0], seen[-1].sum(dim=(1, 2, 3)) / DENSITY_PER_OBJECT)
    assert bool((counts[1] > counts[0]).all()) and bool((counts[2] > counts[1]).all())
    # 0.2 more density on every cell of the map is 0.2 · SIDE² / 60 more objects at most
    assert bool((counts[2] - counts[0] <= 0.2 * SIDE * SIDE / DENSITY_PER_OBJECT + 1e-4).all())


def test_bad_reward_inputs_are_named():
    sd, head, target = StandInSD(), tiny_head(), CountTarget.build(["apple"], [2])
    contexts, masks = contexts_and_masks(1)
    with pytest.raises(ValueError, match="reads 24"):
        T2ICountReward(head, sd.encode, sd.unet_features, torch.zeros(1, TOKENS, 768), masks, target)
    with pytest.raises(ValueError, match=r"\[K=1, T, D\]"):
        T2ICountReward(head, sd.encode, sd.unet_features, contexts.repeat(2, 1, 1), masks, target)
    with pytest.raises(ValueError, match="at least one token"):
        T2ICountReward(head, sd.encode, sd.unet_features, contexts, torch.zeros_like(masks), target)
    with pytest.raises(ValueError, match="multiple of 64"):
        T2ICountReward(head, sd.encode, sd.unet_features, contexts, masks, target, image_size=100)
    with pytest.raises(TypeError, match="CountTarget"):
        T2ICountReward(head, sd.encode, sd.unet_features, contexts, masks, {"apple": 2})


def test_phrase_token_mask_covers_the_phrase_tokens():
    start, end = 49406, 49407
    assert phrase_token_mask([start, 11, 12, end, end, end], end).tolist() == [0, 1, 1, 0, 0, 0]
    with pytest.raises(ValueError, match="no end token"):
        phrase_token_mask([start, 11, 12], end)
    with pytest.raises(ValueError, match="no tokens"):
        phrase_token_mask([start, end, end], end)


def checkpoint_state(head: CountHead) -> dict[str, torch.Tensor]:
    state = {f"{UNET_PREFIX}time_embed.0.weight": torch.randn(8, 4), f"{UNET_PREFIX}out.2.bias": torch.zeros(4)}
    state.update({f"{HEAD_PREFIX}{k}": v.clone() for k, v in head.state_dict().items()})
    state.update({"vae.encoder.conv_in.weight": torch.zeros(2, 3, 3, 3),
                  "clip.transformer.text_model.final_layer_norm.weight": torch.ones(2)})
    return state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_checkpoint_loads_the_head_strictly_and_keeps_the_unet_weights(tmp_path, suffix):
    head = tiny_head(seed=4)
    path = tmp_path / f"best_model_paper{suffix}"
    state = checkpoint_state(head)
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file
        save_file(state, str(path))
    loaded = read_t2icount_checkpoint(path)
    assert loaded.skipped == 2
    assert sorted(loaded.unet_state) == ["out.2.bias", "time_embed.0.weight"]
    assert loaded.head.widths == TINY_WIDTHS and loaded.head.text_dim == TINY_TEXT
    assert not any(p.requires_grad for p in loaded.head.parameters()) and not loaded.head.training
    features, text = random_features(1), torch.randn(1, TINY_TEXT)
    torch.testing.assert_close(loaded.head(features, text), head(features, text))


def test_wrong_checkpoints_are_refused_with_the_file_named(tmp_path):
    path = tmp_path / "best_model_paper.pth"
    with pytest.raises(RewardLoadError, match="file not found") as info:
        read_t2icount_checkpoint(path)
    assert str(path) in str(info.value) and "cha15yq/T2ICount" in str(info.value)
    state = checkpoint_state(tiny_head())
    torch.save({**state, "decoder.upsample1.conv3.0.bias": torch.zeros(3)}, path)
    with pytest.raises(RewardLoadError, match="wrong shapes"):
        read_t2icount_checkpoint(path)
    torch.save({**state, "module.extra": torch.zeros(1)}, path)
    with pytest.raises(RewardLoadError, match="unexpected keys"):
        read_t2icount_checkpoint(path)
    torch.save({k: v for k, v in state.items() if not k.startswith(UNET_PREFIX)}, path)
    with pytest.raises(RewardLoadError, match="not a T2ICount checkpoint"):
        read_t2icount_checkpoint(path)
    torch.save({k: v for k, v in state.items() if k != "decoder.upsample1.text_conv.weight"}, path)
    with pytest.raises(RewardLoadError, match="has no key"):
        read_t2icount_checkpoint(path)


# --------------------------------------------------------------------------- against the authors' own classes

AUTHORS_PYTHON = Path(os.environ.get("PSI_T2ICOUNT_PYTHON") or "/nonexistent")
AUTHORS_CODE = Path(os.environ.get("PSI_T2ICOUNT_CODE") or "/nonexistent")
AUTHORS_SCRIPT = """
import sys
import torch
import torch.nn.functional as F
from torch import nn
code, data, out = sys.argv[1:4]
sys.path.insert(0, code)
from models.decoder import Regressor, Upsample
source = open(code + "/models/reg_model.py").read()  # its Decoder, without the module's SD/CLIP imports
namespace = {"nn": nn, "F": F, "torch": torch, "Upsample": Upsample, "Regressor": Regressor}
exec(source[source.index("class Decoder"):source.index("def minmax_norm")], namespace)
given = torch.load(data, weights_only=True)
decoder = namespace["Decoder"](in_dim=given["widths"], out_dim=given["out_dim"]).eval()
decoder.load_state_dict(given["state"], strict=True)
with torch.no_grad():
    torch.save(decoder(given["features"], given["text"])[0], out)
"""


@pytest.mark.skipif(not (AUTHORS_PYTHON.exists() and (AUTHORS_CODE / "models" / "decoder.py").is_file()),
                    reason=f"no interpreter with einops at {AUTHORS_PYTHON} (PSI_T2ICOUNT_PYTHON) or no T2ICount "
                           f"checkout at {AUTHORS_CODE} (PSI_T2ICOUNT_CODE)")
def test_head_equals_the_authors_decoder(tmp_path):
    """The authors' Decoder (their code, run in its own interpreter; it hard-codes 768-wide text
    and the 24² map of a 384² input) with our head's weights gives our density."""
    with seeded(11):
        head = CountHead(TINY_WIDTHS, 768, TINY_OUT).eval().requires_grad_(False)
        head.regressor.reg_head[4].bias.fill_(0.02)
    features, text = random_features(2, side=48), torch.randn(2, 768, generator=torch.Generator().manual_seed(12))
    torch.save({"widths": list(TINY_WIDTHS), "out_dim": TINY_OUT, "state": head.state_dict(), "features": features,
                "text": text}, tmp_path / "given.pt")
    script = tmp_path / "authors.py"
    script.write_text(AUTHORS_SCRIPT)
    done = subprocess.run([str(AUTHORS_PYTHON), str(script), str(AUTHORS_CODE), str(tmp_path / "given.pt"),
                           str(tmp_path / "density.pt")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = torch.load(tmp_path / "density.pt", weights_only=True)
    with torch.no_grad():
        ours = head(features, text)
    assert ours.shape == theirs.shape == (2, 1, 48, 48) and float(ours.abs().max()) > 0
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
