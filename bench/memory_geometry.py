"""Memory and time of one guided look-ahead at real model geometry, per memory mode (CPU).

One gradient evaluation of the Ψ-Sampler (Yoon et al., arXiv 2506.01320) for one particle
(grad batch 1) is r̂(x) = reward(decode(D(x, σ))) and d r̂ / d x: the denoiser D (CFG:
batch 2 for SD; FLUX is guidance-distilled, batch 1), the decoder (batch 1) and the
reward (aesthetic: CLIP ViT-L/14 + MLP at 224², from a 512² image). Each part runs
forward then backward w.r.t. its input, alone in a fresh subprocess, with random weights
at the real architecture built from the host ComfyUI's own classes (transformers for the
reward), float32, modes:

  fast      no checkpointing
  ckpt      the part's repeated blocks checkpointed (comfy_host.checkpointing, Chen et
            al. 2016): the decoder in memory modes balanced and low, the denoiser in low

Memory: the kernel's resident-set high-water mark (VmHWM), reset (/proc/self/clear_refs)
after the weights are built and the allocator trimmed; glibc runs with a fixed mmap
threshold so freed tensors go back to the system. activation = peak − resident before the
pass; retained = resident after the forward − before (what stays alive until backward).

The whole look-ahead is composed from its parts in the order they run: the denoiser's
activations stay alive through decoder and reward, the decoder's through the reward, so
activation(whole) = max(A_den + A_dec + P_rew, A_den + P_dec, P_den) (A retained, P peak),
time(whole) = sum of the parts.

Run with the host's python and the repository on the path, e.g.
  PYTHONPATH=$REPO:$COMFYUI_PATH $COMFYUI_PATH/.venv/bin/python bench/memory_geometry.py --plan sd15
  ... --part unet --model sd15 --mode fast          (one part, JSON line; what --plan runs)
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GiB = 2.0 ** 30

SD15_UNET = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "in_channels": 4, "model_channels": 320, "num_res_blocks": [2, 2, 2, 2],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1,
    "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_temporal_attention": False, "use_temporal_resblock": False,
}
SDXL_UNET = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10], "channel_mult": [1, 2, 4],
    "transformer_depth_middle": 10, "use_linear_in_transformer": True, "context_dim": 2048, "num_head_channels": 64,
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
FLUX_DIT = {
    "image_model": "flux", "in_channels": 16, "out_channels": 16, "patch_size": 2, "vec_in_dim": 768,
    "context_in_dim": 4096, "hidden_size": 3072, "mlp_ratio": 4.0, "num_heads": 24, "axes_dim": [16, 56, 56],
    "theta": 10000, "qkv_bias": True, "guidance_embed": True,
}
FLUX_FULL_DEPTH = (19, 38)
TEXT_TOKENS = {"sd15": 77, "sdxl": 77, "flux": 512}


# --------------------------------------------------------------------------- measuring


def _rss_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _reset_peak() -> int:
    """Trim the allocator, reset VmHWM; returns the resident KiB now."""
    import gc
    gc.collect()
    _trim()
    Path("/proc/self/clear_refs").write_text("5")
    return _rss_kib("VmRSS")


def fwd_bwd(forward, inputs, repeats: int) -> dict:
    """forward(*inputs) -> output; d Σ output² / d inputs[0]; figures of each repeat (GiB, s)."""
    import torch
    runs = []
    for _ in range(repeats):
        base = _reset_peak()
        x = inputs[0].detach().clone().requires_grad_(True)
        t0, c0 = time.perf_counter(), time.process_time()
        out = forward(x, *inputs[1:])
        loss = out.float().square().mean()
        t1 = time.perf_counter()
        retained = _rss_kib("VmRSS") - base
        (grad,) = torch.autograd.grad(loss, x)
        t2, c2 = time.perf_counter(), time.process_time()
        peak = _rss_kib("VmHWM") - base
        assert torch.isfinite(grad).all(), "non-finite gradient"
        del out, loss, grad, x
        runs.append({"forward_s": t1 - t0, "backward_s": t2 - t1, "cpu_s": c2 - c0, "retained_gib": retained * 1024 / GiB,
                     "activation_gib": peak * 1024 / GiB, "resident_gib": base * 1024 / GiB})
    return runs


def init_weights_(module, std: float = 0.02, seed: int = 0) -> int:
    """Random weights (ComfyUI's ops skip initialisation): norm scales 1, biases 0, others N(0, std²),
    drawn on the weights' device. Returns the parameter count."""
    import torch
    device = next(module.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    count = 0
    with torch.no_grad():
        for name, p in module.named_parameters():
            count += p.numel()
            if p.ndim == 1 and ("norm" in name or name.endswith(".scale")) and not name.endswith("bias"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.copy_((torch.randn(p.shape, generator=generator, device=device) * std).to(p.dtype))
        for p in module.parameters():
            p.requires_grad_(False)
    return count


# --------------------------------------------------------------------------- parts


def clone_saved():
    """Saved-tensor hooks that clone activations (tensors requiring grad) at save time."""
    import torch
    return torch.autograd.graph.saved_tensors_hooks(lambda t: t.clone() if t.requires_grad else t, lambda t: t)


def _host_setup(threads: int) -> None:
    sys.argv = [sys.argv[0], "--cpu"]
    import comfy.options
    comfy.options.enable_args_parsing()
    import torch
    torch.set_num_threads(threads)
    import comfy.model_management
    comfy.model_management.in_training = True  # eager RoPE etc., as in the bridge's gradient passes


def _operations(weights: str):
    import torch
    import comfy.ops
    if weights == "fp32":
        return comfy.ops.disable_weight_init, None
    dtype = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}[weights]
    return comfy.ops.manual_cast, dtype


def build_unet(model: str, latent: int, weights: str):
    import torch
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    config = dict(SD15_UNET if model == "sd15" else SDXL_UNET)
    ops, dtype = _operations(weights)
    net = UNetModel(**config, dtype=dtype or torch.float32, operations=ops).eval()
    params = init_weights_(net)
    g = torch.Generator().manual_seed(1)
    x = torch.randn((2, 4, latent, latent), generator=g)
    t = torch.tensor([500.0, 500.0])
    context = torch.randn((2, TEXT_TOKENS[model], config["context_dim"]), generator=g)
    kwargs = {}
    if model == "sdxl":
        kwargs["y"] = torch.randn((2, config["adm_in_channels"]), generator=g)
    return net, (lambda x_, t_, c_: net(x_, t_, context=c_, **kwargs)), (x, t, context), params


def build_flux(double: int, single: int, weights: str, device=None):
    import dataclasses
    import torch
    import comfy.ldm.flux.model as flux
    config = dict(FLUX_DIT, depth=double, depth_single_blocks=single)
    if "txt_ids_dims" in {f.name for f in dataclasses.fields(flux.FluxParams)}:
        config["txt_ids_dims"] = []
    ops, dtype = _operations(weights)
    net = flux.Flux(**config, dtype=dtype or torch.float32, device=device, operations=ops).eval()
    params = init_weights_(net)
    g = torch.Generator().manual_seed(1)
    x = torch.randn((1, 16, 64, 64), generator=g)  # 512² image: 32×32 = 1024 patches
    context = torch.randn((1, TEXT_TOKENS["flux"], 4096), generator=g)
    y = torch.randn((1, 768), generator=g)
    guidance = torch.tensor([3.5])
    return net, (lambda x_, t_, c_: net(x_, t_, context=c_, y=y, guidance=guidance)), \
        (x, torch.tensor([0.7]), context), params


def build_vae_decoder(latent_channels: int, latent: int):
    import torch
    from comfy.ldm.models.autoencoder import AutoencoderKL
    ddconfig = {"double_z": True, "z_channels": latent_channels, "resolution": 256, "in_channels": 3, "out_ch": 3,
                "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    vae = AutoencoderKL(ddconfig=ddconfig, embed_dim=latent_channels).eval()
    del vae.encoder
    params = init_weights_(vae)
    z = torch.randn((1, latent_channels, latent, latent), generator=torch.Generator().manual_seed(1))
    return vae.decoder, vae.decode, (z,), params


def build_taesd(latent_channels: int, latent: int, layers: str = "pack"):
    """TAESD's decoder: "pack", as the look-ahead loads and calls it (comfy_host.taesd:
    frozen-weight layers); "autograd", torch's own Conv2d and ReLU (as ComfyUI's previewer)."""
    import torch
    from comfy.taesd.taesd import TAESD
    taesd = TAESD(latent_channels=latent_channels).eval()
    del taesd.taesd_encoder
    params = init_weights_(taesd, std=0.05)
    z = torch.randn((1, latent_channels, latent, latent), generator=torch.Generator().manual_seed(1))
    decoder = taesd.taesd_decoder
    if layers == "pack":
        from psi_sampler.comfy_host.taesd import decoder_input, prepare_for_gradients
        prepare_for_gradients(decoder)
        return decoder, lambda x: decoder(decoder_input(x, decoder)), (z,), params
    return decoder, decoder, (z,), params


def build_reward(image: int):
    import torch
    from rewards_bench import clip_l14_aesthetic
    reward = clip_l14_aesthetic()
    params = sum(p.numel() for m in reward.modules() for p in m.parameters())
    images = torch.rand((1, 3, image, image), generator=torch.Generator().manual_seed(1))
    return None, reward, (images,), params


def run_part(args) -> dict:
    _host_setup(args.threads)
    from pack import load_pack
    load_pack()
    from psi_sampler.comfy_host import checkpointing
    latent = args.image // 8
    channels = 16 if args.model == "flux" else 4
    if args.part == "denoiser":
        if args.model == "flux":
            root, forward, inputs, params = build_flux(args.double, args.single, args.weights)
        else:
            root, forward, inputs, params = build_unet(args.model, latent, args.weights)
    elif args.part == "vae":
        root, forward, inputs, params = build_vae_decoder(channels, latent)
    elif args.part == "taesd":
        root, forward, inputs, params = build_taesd(channels, latent, args.taesd_layers)
    elif args.part == "reward":
        root, forward, inputs, params = build_reward(args.image)
    else:
        raise ValueError(f"part must be denoiser, vae, taesd or reward; got {args.part!r}")
    blocks = checkpointing.find_blocks(root) if (args.mode == "ckpt" and root is not None) else []
    # FLUX adds residuals in place into saved activations: clone them, as the host bridge does
    hooks = clone_saved if (args.part == "denoiser" and args.model == "flux") else contextlib.nullcontext
    with hooks(), checkpointing.checkpointed(blocks, hooks):
        runs = fwd_bwd(forward, inputs, args.repeats)
    best = min(runs, key=lambda r: r["forward_s"] + r["backward_s"])
    return {"part": args.part, "model": args.model, "mode": args.mode, "image": args.image, "weights": args.weights,
            "taesd_layers": args.taesd_layers if args.part == "taesd" else None,
            "double": args.double, "single": args.single, "params_m": params / 1e6, "blocks": len(blocks),
            "threads": args.threads, "repeats": args.repeats,
            "activation_gib": max(r["activation_gib"] for r in runs),
            "retained_gib": max(r["retained_gib"] for r in runs), "resident_gib": best["resident_gib"],
            "time_s": best["forward_s"] + best["backward_s"], "forward_s": best["forward_s"],
            "backward_s": best["backward_s"], "times_s": [r["forward_s"] + r["backward_s"] for r in runs],
            "cpu_s": min(r["cpu_s"] for r in runs),
            "load": os.getloadavg()[0]}


# --------------------------------------------------------------------------- plans


def _free_gib() -> float:
    return int(re.search(r"MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2 ** 20


def spawn(part: str, model: str, mode: str, image: int, args, need_gib: float, **extra) -> dict:
    """One part in a fresh process (waits while less than need_gib is available)."""
    waited = 0
    while _free_gib() < need_gib:
        if waited == 0:
            print(f"  waiting for {need_gib:.0f} GiB free (now {_free_gib():.1f})", file=sys.stderr)
        time.sleep(20)
        waited += 20
        if waited > 1800:
            raise RuntimeError(f"{need_gib} GiB never became free")
    cmd = [sys.executable, __file__, "--part", part, "--model", model, "--mode", mode, "--image", str(image),
           "--threads", str(args.threads), "--repeats", str(args.repeats)]
    for key, value in extra.items():
        cmd += [f"--{key}", str(value)]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    print(f"  {' '.join(cmd[2:])} (free {_free_gib():.1f} GiB, load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"    -> {result['activation_gib']:.2f} GiB, {result['time_s']:.1f} s", file=sys.stderr)
    return result


def compose(den: dict, dec: dict, rew: dict) -> tuple[float, float]:
    """Activation GiB and time s of the whole look-ahead from its parts (module docstring)."""
    act = max(den["retained_gib"] + dec["retained_gib"] + rew["activation_gib"],
              den["retained_gib"] + dec["activation_gib"], den["activation_gib"])
    return act, den["cpu_s"] + dec["cpu_s"] + rew["cpu_s"]


def machine() -> str:
    import torch
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    total = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2 ** 20
    return (f"{cpu}, {os.cpu_count()} cores, {_free_gib():.0f} GiB available of {total:.0f}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def row(r: dict, label: str) -> str:
    return (f"| {label} | {r['params_m']:.0f} | {r['blocks']} | {r['resident_gib']:.2f} | {r['retained_gib']:.2f} | "
            f"{r['activation_gib']:.2f} | {r['forward_s']:.1f} | {r['backward_s']:.1f} | {r['time_s']:.1f} | "
            f"{' / '.join(f'{t:.1f}' for t in r['times_s'])} | {r['cpu_s']:.1f} | {r['load']:.1f} |")


HEADER = ("| part | params M | blocks ckpt | resident GiB | retained after fwd GiB | activation peak GiB | fwd s | "
          "bwd s | fwd+bwd s (min) | each run s | CPU s (min) | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def plan_sd(args, model: str) -> str:
    image = args.image
    lines = [f"### {model.upper()} at {image}² (latent {image // 8}², CFG batch 2, grad batch 1)", "",
             f"Machine: {machine()}; {args.threads} torch threads; min of {args.repeats} runs per part.", "",
             HEADER]
    parts = {}
    need = {"sd15": (14, 8), "sdxl": (22, 8)}[model]
    scale = (image / 512) ** 2
    for mode in ("fast", "ckpt"):
        parts["den", mode] = spawn("denoiser", model, mode, image, args, need[0] * (scale if mode == "fast" else 0.5))
        lines.append(row(parts["den", mode], f"UNet {mode}"))
    for mode in ("fast", "ckpt"):
        parts["vae", mode] = spawn("vae", model, mode, image, args, need[1] * scale)
        lines.append(row(parts["vae", mode], f"VAE decoder {mode}"))
    parts["taesd"] = spawn("taesd", model, "fast", image, args, 3)
    lines.append(row(parts["taesd"], "TAESD decoder"))
    parts["rew"] = spawn("reward", model, "fast", image, args, 4)
    lines.append(row(parts["rew"], "reward (CLIP ViT-L/14 + MLP)"))
    lines += ["", "Whole guided look-ahead per particle, composed from the parts:", "",
              "| memory mode | decoder | activation GiB | CPU s | activation / fast | CPU time / fast |",
              "|---|---|---|---|---|---|"]
    combos = {("fast", "vae"): (parts["den", "fast"], parts["vae", "fast"]),
              ("balanced", "vae"): (parts["den", "fast"], parts["vae", "ckpt"]),
              ("low", "vae"): (parts["den", "ckpt"], parts["vae", "ckpt"]),
              ("fast", "taesd"): (parts["den", "fast"], parts["taesd"]),
              ("low", "taesd"): (parts["den", "ckpt"], parts["taesd"])}
    base_act, base_time = compose(*combos["fast", "vae"], parts["rew"])
    for (mode, decoder), (den, dec) in combos.items():
        act, t = compose(den, dec, parts["rew"])
        lines.append(f"| {mode} | {decoder} | {act:.2f} | {t:.1f} | {act / base_act:.2f} | {t / base_time:.2f} |")
    vae, taesd = parts["vae", "fast"], parts["taesd"]
    lines += ["", f"TAESD / VAE decoder fwd+bwd: CPU time {taesd['cpu_s'] / vae['cpu_s']:.3f}×, activation "
                  f"{taesd['activation_gib'] / vae['activation_gib']:.3f}×.", ""]
    return "\n".join(lines), parts


def plan_flux(args) -> str:
    depths = [(1, 0), (0, 1), (0, 0)]
    lines = [f"### FLUX at real width (hidden 3072, 24 heads), {args.image}²: {(args.image // 16) ** 2} image + 512 "
             f"text tokens, batch 1, weights {args.weights}", "",
             f"Machine: {machine()}; {args.threads} torch threads; min of {args.repeats} runs per part.", "",
             HEADER]
    parts = {}
    for mode in ("fast", "ckpt"):
        for double, single in depths:
            if mode == "ckpt" and double + single == 0:
                parts[(0, 0), mode] = parts[(0, 0), "fast"]
                continue
            r = spawn("denoiser", "flux", mode, args.image, args, 8, double=double, single=single,
                      weights=args.weights)
            parts[(double, single), mode] = r
            lines.append(row(r, f"FLUX {double} double + {single} single, {mode}"))
    lines += ["", f"Extrapolated per block to {FLUX_FULL_DEPTH[0]} double + {FLUX_FULL_DEPTH[1]} single blocks "
                  "(block = depth-1 model minus the depth-0 model):", "",
              "| mode | resident GiB | retained GiB | activation GiB | fwd+bwd CPU s |", "|---|---|---|---|---|"]
    for mode in ("fast", "ckpt"):
        base = parts[(0, 0), mode]
        est = {}
        for key in ("resident_gib", "retained_gib", "activation_gib", "cpu_s"):
            per_double = parts[(1, 0), mode][key] - base[key]
            per_single = parts[(0, 1), mode][key] - base[key]
            if key == "activation_gib" and mode == "ckpt":
                # checkpointed: kept block inputs add up, the recomputed block's own peak does not
                kept_d = parts[(1, 0), mode]["retained_gib"] - base["retained_gib"]
                kept_s = parts[(0, 1), mode]["retained_gib"] - base["retained_gib"]
                est[key] = (base[key] + FLUX_FULL_DEPTH[0] * kept_d + FLUX_FULL_DEPTH[1] * kept_s
                            + max(per_double - kept_d, per_single - kept_s))
            else:
                est[key] = base[key] + FLUX_FULL_DEPTH[0] * per_double + FLUX_FULL_DEPTH[1] * per_single
        lines.append(f"| {mode} | {est['resident_gib']:.2f} | {est['retained_gib']:.2f} | {est['activation_gib']:.2f} | "
                     f"{est['cpu_s']:.1f} |")
        parts["full", mode] = est
    parts["vae", "fast"] = spawn("vae", "flux", "fast", args.image, args, 8)
    parts["vae", "ckpt"] = spawn("vae", "flux", "ckpt", args.image, args, 4)
    parts["taesd"] = spawn("taesd", "flux", "fast", args.image, args, 3)
    lines += ["", HEADER, row(parts["vae", "fast"], "FLUX VAE decoder fast"),
              row(parts["vae", "ckpt"], "FLUX VAE decoder ckpt"), row(parts["taesd"], "TAEF1 decoder"), ""]
    return "\n".join(lines), parts


def plan_decoders(args) -> tuple[str, dict]:
    """The two look-ahead decoders alone at one image size, each configuration `repeats` times in a
    fresh process: the VAE decoder and TAESD's, fast and checkpointed, TAESD also with torch's own
    layers (what the pack's frozen-weight layers are measured against)."""
    model, image = args.model, args.image
    lines = [f"### Look-ahead decoders alone, {model.upper()} latent format, {image}² (batch 1)", "",
             f"Machine: {machine()}; {args.threads} torch threads; min of {args.repeats} runs (memory: max).", "",
             HEADER]
    scale = (image / 512) ** 2
    configs = {("vae", "fast"): "VAE decoder fast", ("vae", "ckpt"): "VAE decoder ckpt",
               ("taesd-autograd", "fast"): "TAESD decoder, torch's layers, fast",
               ("taesd", "fast"): "TAESD decoder, frozen-weight layers, fast",
               ("taesd", "ckpt"): "TAESD decoder, frozen-weight layers, ckpt"}
    parts = {}
    for (part, mode), label in configs.items():
        kind, _, layers = part.partition("-")
        parts[part, mode] = spawn(kind, model, mode, image, args, (8 if part == "vae" else 3) * scale,
                                  **({"taesd-layers": layers or "pack"} if kind == "taesd" else {}))
        lines.append(row(parts[part, mode], label))
    lines.append("")
    for (part, mode), label in configs.items():
        if part == "vae":
            continue
        vae = parts["vae", mode]
        r = parts[part, mode]
        lines.append(f"- {label} / VAE decoder {mode}: CPU time {r['cpu_s'] / vae['cpu_s']:.3f}×, wall "
                     f"{r['time_s'] / vae['time_s']:.3f}×, activation peak {r['activation_gib'] / vae['activation_gib']:.3f}×.")
    frozen, torch_layers = parts["taesd", "fast"], parts["taesd-autograd", "fast"]
    lines.append(f"- TAESD frozen-weight layers / torch's layers (fast): activation peak "
                 f"{frozen['activation_gib'] / torch_layers['activation_gib']:.3f}×, retained "
                 f"{frozen['retained_gib'] / torch_layers['retained_gib']:.3f}×, CPU time "
                 f"{frozen['cpu_s'] / torch_layers['cpu_s']:.3f}×.")
    return "\n".join(lines) + "\n", parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", choices=("sd15", "sdxl", "flux", "decoders"), help="run every part of one table")
    parser.add_argument("--part", choices=("denoiser", "vae", "taesd", "reward"))
    parser.add_argument("--model", choices=("sd15", "sdxl", "flux"), default="sd15")
    parser.add_argument("--mode", choices=("fast", "ckpt"), default="fast")
    parser.add_argument("--image", type=int, default=512, help="image side in pixels (latent = side / 8)")
    parser.add_argument("--weights", choices=("fp32", "fp8_e4m3fn", "fp8_e5m2"), default="fp32")
    parser.add_argument("--double", type=int, default=1)
    parser.add_argument("--single", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--taesd-layers", choices=("pack", "autograd"), default="pack",
                        help="TAESD as the look-ahead runs it (frozen-weight layers) or with torch's own layers")
    parser.add_argument("--out", help="append the markdown table and the JSON figures to this file")
    args = parser.parse_args()
    if args.part:
        print(json.dumps(run_part(args)))
        return
    if not args.plan:
        parser.error("give --plan or --part")
    started = time.time()
    if args.plan == "decoders":
        text, parts = plan_decoders(args)
    else:
        text, parts = plan_flux(args) if args.plan == "flux" else plan_sd(args, args.plan)
    model = f" --model {args.model}" if args.plan == "decoders" else ""
    text += f"\nCommand: `python bench/memory_geometry.py --plan {args.plan}{model} --image {args.image} --repeats " \
            f"{args.repeats} --threads {args.threads}" + (f" --weights {args.weights}" if args.weights != "fp32" else "") \
            + f"` ({time.time() - started:.0f} s, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).\n"
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n<!-- " + json.dumps({f"{k}": v for k, v in parts.items()}, default=str) + " -->\n")


if __name__ == "__main__":
    main()
