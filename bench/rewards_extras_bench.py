"""CPU timing of forward + backward per image for the optional reward backends, at the real
model geometry with random weights (the companion of bench/rewards_bench.py, whose
`time_forward_backward` it uses). Each backend needs its own interpreter:

    "$(bash scripts/side_env.sh extras | tail -n 1)"  bench/rewards_extras_bench.py --backend hpsv2
    "$(bash scripts/side_env.sh extras | tail -n 1)"  bench/rewards_extras_bench.py --backend imagereward
    "$(bash scripts/side_env.sh gdino | tail -n 1)"   bench/rewards_extras_bench.py --backend groundingdino-py

(options: --threads 2, --repeats 2, --image-side 512, --batch 1). Run them one after another.

Each builds the real architecture with the package's own classes and random weights, writes
the files the pack's loader reads into a temporary folder, loads them through the loader and
times d sum(scores) / d images after one warm-up pass:

  hpsv2             open_clip ViT-H-14 (create_model, pretrained=None) saved as HPS_v2.1_compressed.pt,
                    rewards.heldout.load_hpsv2; one prompt; images letterboxed to 224
  imagereward       image-reward's ImageReward (its BLIP ViT-L/16 at 224, depth 24, width 1024; its
                    BLIP BertModel from THUDM/ImageReward's med_config.json, cross-attention to the
                    image; MLP) saved as ImageReward.pt, rewards.heldout.load_image_reward
  groundingdino-py  the package's Swin-T OGC config, no overrides, with a random bert-base BertModel
                    folder, saved as groundingdino_swint_ogc.pth, rewards.grounding_py.load_groundingdino_py
                    (shortest side 800 by default); LayoutReward with two phrases

Prints one markdown table row per backend and a machine line (for docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from pack import REPO, load_pack

TESTS = REPO / "tests" / "rewards"
PROMPT = "a photo of a cat"


def bert_vocab_file(path: Path, size: int = 30522) -> None:
    """vocab.txt: the test vocabulary (tests/rewards/rewards_testing.py) padded to bert-base's 30522 entries."""
    sys.path.insert(0, str(TESTS))
    from rewards_testing import bert_vocab

    vocab = bert_vocab()
    tokens = sorted(vocab, key=vocab.get)
    tokens += [f"filler_c{i}" for i in range(size - len(tokens))]
    path.write_text("\n".join(tokens) + "\n")


# --------------------------------------------------------------------------- backends


def build_hpsv2(folder: Path):
    import open_clip
    import torch

    from psi_sampler.rewards.heldout import load_hpsv2

    model = open_clip.create_model("ViT-H-14", pretrained=None)
    info = {"vision_params_M": sum(p.numel() for p in model.visual.parameters()) / 1e6}
    torch.save({"state_dict": model.state_dict()}, folder / "HPS_v2.1_compressed.pt")  # HPS v2's file layout
    del model
    reward = load_hpsv2(folder / "HPS_v2.1_compressed.pt", PROMPT)
    info["geometry"] = f"open_clip ViT-H-14, letterbox to {reward.image_size}"
    info["versions"] = f"open_clip_torch {open_clip.__version__}"
    return reward, info


def build_image_reward(folder: Path):
    import torch
    import transformers

    from psi_sampler.rewards.image_reward import load_image_reward

    # THUDM/ImageReward's med_config.json (BLIP's, with the two tokens BLIP adds to bert-base-uncased)
    med_config = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
                  "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
                  "intermediate_size": 3072, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
                  "model_type": "bert", "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0,
                  "type_vocab_size": 2, "vocab_size": 30524, "encoder_width": 1024, "add_cross_attention": True}
    (folder / "med_config.json").write_text(json.dumps(med_config))
    bert_vocab_file(folder / "vocab.txt")

    # the package's own ImageReward class (as tests/rewards/test_heldout_packages.py builds it), with
    # BLIP_Pretrain replaced by the real-size parts of BLIP's create_vit("large", 224) and text encoder
    # (BLIP_Pretrain's init_tokenizer would download bert-base-uncased)
    sys.path.insert(0, str(TESTS))
    from rewards_testing import blip_stand_in, image_reward_package

    ir_module, vit, med = image_reward_package()  # needs image-reward, so transformers <= 4.55
    ir_module.BLIP_Pretrain = blip_stand_in(vit, med, folder / "med_config.json", patch_size=16, embed_dim=1024,
                                            depth=24, num_heads=16)
    package_model = ir_module.ImageReward(med_config=str(folder / "med_config.json"), device="cpu")
    info = {"vision_params_M": sum(p.numel() for p in package_model.blip.visual_encoder.parameters()) / 1e6}
    torch.save(package_model.state_dict(), folder / "ImageReward.pt")
    del package_model
    reward = load_image_reward(folder / "ImageReward.pt", folder / "med_config.json", PROMPT)
    info["geometry"] = f"BLIP ViT-L/16 + BERT-base cross-attn, {reward.image_size}"
    info["versions"] = f"transformers {transformers.__version__}"
    return reward, info


def build_groundingdino_py(folder: Path):
    import torch
    import transformers
    from transformers import BertConfig, BertModel

    from psi_sampler.rewards.grounding_py import build_swint_ogc, load_groundingdino_py
    from psi_sampler.rewards.layout import LayoutReward
    from psi_sampler.rewards.targets import LayoutTarget

    bert = folder / "bert"
    bert.mkdir()
    bert_vocab_file(bert / "vocab.txt")
    BertModel(BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, max_position_embeddings=512)).save_pretrained(bert)
    built = build_swint_ogc(bert)
    # DETR-style init zeroes the last box layer (boxes = anchors); give it weights, as the test does
    with torch.no_grad():
        for module in (built.bbox_embed[0], built.transformer.enc_out_bbox_embed):
            torch.nn.init.normal_(module.layers[-1].weight, std=0.1)
    info = {"vision_params_M": sum(p.numel() for p in built.backbone.parameters()) / 1e6,
            "queries": int(built.num_queries)}
    torch.save({"model": built.state_dict()}, folder / "groundingdino_swint_ogc.pth")
    del built
    detector = load_groundingdino_py(folder / "groundingdino_swint_ogc.pth", bert)
    target = LayoutTarget.build(["cat", "dog"], [[0.1, 0.1, 0.5, 0.5], [0.5, 0.4, 0.9, 0.9]])
    reward = LayoutReward(detector, target)
    info["geometry"] = (f"Swin-T OGC + BERT-base, {info['queries']} queries, shortest side {detector.shortest}, "
                        "2 phrases")
    import groundingdino

    version = getattr(groundingdino, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("groundingdino-py")
    info["versions"] = f"groundingdino-py {version}, transformers {transformers.__version__}"
    return reward, info


BACKENDS = {"hpsv2": ("HPSv2", build_hpsv2), "imagereward": ("ImageReward", build_image_reward),
            "groundingdino-py": ("layout (groundingdino-py)", build_groundingdino_py)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=sorted(BACKENDS), required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--image-side", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--header", action="store_true", help="print the table header first")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    load_pack()
    from rewards_bench import time_forward_backward

    label, build = BACKENDS[args.backend]
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="psi_rewards_bench_") as tmp:
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        reward, info = build(Path(tmp))
        built = time.perf_counter() - start
    params = sum(p.numel() for m in reward.modules() for p in m.parameters())
    images = torch.rand(args.batch, 3, args.image_side, args.image_side,
                        generator=torch.Generator().manual_seed(args.seed))
    load_timing = os.getloadavg()
    warm = time_forward_backward(reward, images, repeats=1)  # warm-up, not reported
    timing = time_forward_backward(reward, images, repeats=args.repeats)
    load_end = os.getloadavg()

    print(f"# {label}: build + load {built:.1f} s; warm-up forward {warm['forward_s']:.2f} s + backward "
          f"{warm['backward_s']:.2f} s; vision/backbone params {info['vision_params_M']:.1f} M; "
          f"load average (1 min) {load_start[0]:.2f} at start, {load_timing[0]:.2f} before timing, "
          f"{load_end[0]:.2f} at end", flush=True)
    if args.header:
        print("| reward | geometry (random weights) | params M | batch | threads | forward s | backward s "
              "| forward CPU s | backward CPU s | load avg start → end |")
        print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {label} | {info['geometry']}; input {args.image_side}² | {params / 1e6:.0f} | {args.batch} "
          f"| {torch.get_num_threads()} | {timing['forward_s']:.2f} | {timing['backward_s']:.2f} "
          f"| {timing['forward_cpu_s']:.2f} | {timing['backward_cpu_s']:.2f} "
          f"| {load_start[0]:.2f} → {load_end[0]:.2f} |")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    print(f"Machine ({label}): {platform.machine()} ({cpu}), {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads, Python {platform.python_version()}, torch {torch.__version__}, "
          f"{info['versions']}; median of "
          f"{args.repeats} after one warm-up, per image; command: {Path(sys.executable)} "
          f"bench/rewards_extras_bench.py --backend {args.backend}", flush=True)


if __name__ == "__main__":
    main()
