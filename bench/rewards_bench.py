"""CPU timing of forward + backward per image at the real reward-model geometries (random weights).

    .venv/bin/python bench/rewards_bench.py [--batch 1] [--image-side 512] [--detector-side 512] [--repeats 2]

Geometries: CLIP ViT-L/14 at 224 px (aesthetic), Grounding DINO base (Swin-B +
BERT-base, 900 queries) at `detector_side` px (layout), CLIP ViT-H/14 at 224 px
with its text tower (PickScore). Weights are random (timing does not depend on
them); the tokenizers are the tests' offline ones (tests/rewards/rewards_testing.py)
because none can be downloaded here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from pack import REPO, load_pack

load_pack()
from psi_sampler.rewards.aesthetic import AestheticHead, AestheticReward  # noqa: E402
from psi_sampler.rewards.base import Reward  # noqa: E402
from psi_sampler.rewards.clip import ClipImageEmbedder  # noqa: E402
from psi_sampler.rewards.grounding import TransformersGroundingDino  # noqa: E402
from psi_sampler.rewards.heldout import pickscore_reward  # noqa: E402
from psi_sampler.rewards.layout import LayoutReward  # noqa: E402
from psi_sampler.rewards.loading import freeze  # noqa: E402
from psi_sampler.rewards.targets import LayoutTarget  # noqa: E402


def time_forward_backward(reward: Reward, images: torch.Tensor, repeats: int = 2) -> dict[str, float]:
    """Median wall and CPU seconds of forward and of backward (d sum(scores) / d images), per image.

    CPU seconds (all threads) are less sensitive to other load on the machine.
    """
    samples: dict[str, list[float]] = {"forward_s": [], "backward_s": [], "forward_cpu_s": [], "backward_cpu_s": []}
    for _ in range(repeats):
        x = images.clone().requires_grad_(True)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        scores = reward(x)
        wall1, cpu1 = time.perf_counter(), time.process_time()
        scores.sum().backward()
        wall2, cpu2 = time.perf_counter(), time.process_time()
        n = images.shape[0]
        samples["forward_s"].append((wall1 - wall0) / n)
        samples["backward_s"].append((wall2 - wall1) / n)
        samples["forward_cpu_s"].append((cpu1 - cpu0) / n)
        samples["backward_cpu_s"].append((cpu2 - cpu1) / n)
    return {key: statistics.median(values) for key, values in samples.items()}


def clip_l14_aesthetic() -> Reward:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                              num_attention_heads=16, image_size=224, patch_size=14, projection_dim=768)
    return AestheticReward(ClipImageEmbedder(freeze(CLIPVisionModelWithProjection(config))), freeze(AestheticHead()))


def _grounding_dino_base_layout(tokenizer: Any, side: int) -> Reward:
    from transformers import BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection, SwinConfig

    backbone = SwinConfig(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12,
                          image_size=384, out_indices=[2, 3, 4])
    text = BertConfig(vocab_size=max(30522, len(tokenizer)))
    model = GroundingDinoForObjectDetection(GroundingDinoConfig(backbone_config=backbone, text_config=text))
    detector = TransformersGroundingDino(model, tokenizer, shortest=side, longest=max(side, 1333))
    target = LayoutTarget.build(["cat", "dog"], [[0.1, 0.1, 0.5, 0.5], [0.5, 0.4, 0.9, 0.9]])
    return LayoutReward(detector, target)


def _clip_h14_pickscore(tokenizer: Any) -> Reward:
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                         max_position_embeddings=77, vocab_size=max(49408, len(tokenizer)), projection_dim=1024),
        vision_config=dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                           image_size=224, patch_size=14, projection_dim=1024),
        projection_dim=1024,
    )
    return pickscore_reward(CLIPModel(config), tokenizer, "a photo of a cat")


def benchmark_rewards(
    bert_tokenizer: Any,
    clip_tokenizer: Any,
    image_side: int = 512,
    detector_side: int = 512,
    batch: int = 1,
    repeats: int = 2,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Build each reward at real geometry with random weights; time forward/backward per image."""
    builders: dict[str, Callable[[], Reward]] = {
        "aesthetic (CLIP ViT-L/14, 224)": clip_l14_aesthetic,
        f"layout (Grounding DINO base, {detector_side})": (
            lambda: _grounding_dino_base_layout(bert_tokenizer, detector_side)
        ),
        "pickscore (CLIP ViT-H/14, 224)": lambda: _clip_h14_pickscore(clip_tokenizer),
    }
    images = torch.rand(batch, 3, image_side, image_side, generator=torch.Generator().manual_seed(seed))
    results = []
    for label, build in builders.items():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            start = time.perf_counter()
            reward = build()
            built = time.perf_counter() - start
        timing = time_forward_backward(reward, images, repeats)
        row = {"reward": label, "params_M": reward.memory_bytes() / 4e6, "build_s": built,
               "threads": torch.get_num_threads(), "batch": batch, **timing}
        log(f"{label}: forward {timing['forward_s']:.2f} s + backward {timing['backward_s']:.2f} s wall per image; "
            f"CPU {timing['forward_cpu_s']:.2f} s + {timing['backward_cpu_s']:.2f} s "
            f"({row['params_M']:.0f} M params, batch {batch}, {row['threads']} threads, build {built:.1f} s)")
        results.append(row)
        del reward
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/rewards_bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--image-side", type=int, default=512)
    parser.add_argument("--detector-side", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests" / "rewards"))
    from rewards_testing import make_bert_tokenizer, make_clip_tokenizer

    benchmark_rewards(make_bert_tokenizer(), make_clip_tokenizer(), args.image_side, args.detector_side,
                      args.batch, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
