"""GPU memory and time of the guided look-ahead, per memory mode, and batched vs one-at-a-time NFE cost.

Prepared for a CUDA machine (run by bench/gpu_memory.sh, which builds the host); nothing is
downloaded. Two parts, each printed as a markdown table:

1. Parts at real geometry (random weights, ComfyUI's classes; builders shared with
   bench/memory_geometry.py): SD1.5 UNet (batch 2 = CFG, 64² latent) and VAE decoder at
   512², TAESD decoder, the aesthetic reward (CLIP ViT-L/14 + MLP), and FLUX at full depth
   (19 double + 38 single blocks, hidden 3072, 1024 image + 512 text tokens) with fp8
   weight storage (ComfyUI's manual-cast ops, bf16 compute): forward + backward w.r.t. the
   input, per mode (fast: no checkpointing; ckpt: the repeated blocks checkpointed with
   comfy_host.checkpointing, Chen et al. 2016). Peak = torch.cuda.max_memory_allocated
   above the memory allocated before the pass; time = min of 3 after a warm-up.
2. The Ψ SMC Sampler node (Yoon et al., arXiv 2506.01320) in process on a random-weight
   SD1.5 UNet and VAE written to safetensors and loaded by ComfyUI's own UNETLoader and
   VAELoader, so ComfyUI 0.33's default model management (dynamic VRAM where comfy-aimdo
   is active) places them: K = 8 particles, grad batch 1 / 2 / 4 and one particle at a
   time (grad batch 1, forward batch 1), time per NFE and device memory peak (sampled from
   torch.cuda.mem_get_info every 5 ms, since dynamic VRAM allocates outside torch's
   allocator statistics), per memory mode.

Usage (the host's python, with the repository and ComfyUI on the path):
  python bench/gpu_memory.py --comfy PATH [--out FILE] [--smoke]
--smoke runs tiny sizes on whatever device there is (to check the script on a CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_by_path(name: str, path: Path, package: bool = False):
    kwargs = {"submodule_search_locations": [str(path.parent)]} if package else {}
    spec = importlib.util.spec_from_file_location(name, path, **kwargs)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def setup(comfy: Path, smoke: bool):
    sys.path[:0] = [str(comfy), str(REPO)]
    sys.argv = [sys.argv[0]] + (["--cpu"] if smoke and not _cuda() else [])
    import comfy.options
    comfy.options.enable_args_parsing()
    import utils.extra_config  # noqa: F401  (as main.py does, before nodes)
    import server  # noqa: F401  (PromptServer.instance stays None: no events are sent)
    import nodes  # noqa: F401
    geometry = load_by_path("memory_geometry", REPO / "bench" / "memory_geometry.py")
    pack = load_by_path("psi_sampler", REPO / "__init__.py", package=True)
    for name in ("nodes.smc_sampler", "comfy_host.sampler_bridge"):
        importlib.import_module(f"psi_sampler.{name}")
    return geometry, pack


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


class DevicePeak:
    """Peak device memory in use (all allocators) while the context runs, sampled."""

    def __enter__(self):
        import torch
        self.torch = torch
        self.cuda = torch.cuda.is_available()
        self.peak = self.start = self._used()
        self.running = True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _used(self) -> int:
        if not self.cuda:
            return 0
        free, total = self.torch.cuda.mem_get_info()
        return total - free

    def _poll(self):
        while self.running:
            self.peak = max(self.peak, self._used())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self._used())


def timed_pass(torch, forward, inputs, device) -> tuple[float, float]:
    """(seconds, peak GiB above the allocation before) of forward + d Σ out² / d inputs[0]."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if device.type == "cuda" else 0
    x = inputs[0].detach().clone().requires_grad_(True)
    start = time.perf_counter()
    out = forward(x, *inputs[1:])
    (grad,) = torch.autograd.grad(out.float().square().mean(), x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() - before) / 2 ** 30 if device.type == "cuda" else float("nan")
    assert torch.isfinite(grad).all()
    return seconds, peak


def part_rows(geometry, args, device) -> list[str]:
    import torch
    from psi_sampler.comfy_host import checkpointing
    latent = 8 if args.smoke else 64
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    parts = {
        "SD1.5 UNet (batch 2)": lambda: geometry.build_unet("sd15", latent, "fp32"),
        "SD1.5 VAE decoder": lambda: geometry.build_vae_decoder(4, latent),
        "TAESD decoder": lambda: geometry.build_taesd(4, latent),
        "reward (CLIP ViT-L/14 + MLP)": lambda: geometry.build_reward(latent * 8),
    }
    rows = ["| part | mode | weights GiB | activation peak GiB | fwd+bwd s (min of 3) |", "|---|---|---|---|---|"]
    for name, build in parts.items():
        root, forward, inputs, _ = build()
        modules = [root] if root is not None else list(forward.modules())
        for module in modules:
            module.to(device=device, dtype=dtype)
        inputs = tuple(t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device) for t in inputs)
        weights = sum(p.numel() * p.element_size() for m in modules for p in m.parameters()) / 2 ** 30
        for mode in ("fast", "ckpt") if root is not None and name != "TAESD decoder" else ("fast",):
            blocks = checkpointing.find_blocks(root) if mode == "ckpt" else []
            with checkpointing.checkpointed(blocks):
                timed_pass(torch, forward, inputs, device)  # warm-up
                runs = [timed_pass(torch, forward, inputs, device) for _ in range(3)]
            rows.append(f"| {name} | {mode} | {weights:.2f} | {max(r[1] for r in runs):.2f} | "
                        f"{min(r[0] for r in runs):.3f} |")
            print(rows[-1], flush=True)
        del root, forward, inputs, modules
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def flux_rows(geometry, args, device) -> list[str]:
    """FLUX at full depth with fp8 weights (bf16 compute): does one look-ahead's denoiser fit?"""
    import torch
    from psi_sampler.comfy_host import checkpointing
    depth = (1, 1) if args.smoke else geometry.FLUX_FULL_DEPTH
    rows = ["| FLUX depth | weights | mode | weights GiB | activation peak GiB | fwd+bwd s |", "|---|---|---|---|---|---|"]
    net, forward, inputs, _ = geometry.build_flux(*depth, "fp8_e4m3fn", device=device)
    for m in net.modules():  # compute dtype of the manual-cast ops: bf16 on the GPU
        if hasattr(m, "comfy_cast_weights"):
            m.comfy_cast_weights = True
    compute = torch.bfloat16 if device.type == "cuda" else torch.float32
    inputs = tuple(t.to(device=device, dtype=compute) if t.is_floating_point() else t.to(device) for t in inputs)
    weights = sum(p.numel() * p.element_size() for p in net.parameters()) / 2 ** 30
    for mode in ("ckpt", "fast"):
        blocks = checkpointing.find_blocks(net) if mode == "ckpt" else []
        hooks = geometry.clone_saved
        try:
            with hooks(), checkpointing.checkpointed(blocks, hooks):
                seconds, peak = timed_pass(torch, forward, inputs, device)
            rows.append(f"| {depth[0]} + {depth[1]} | fp8_e4m3fn | {mode} | {weights:.2f} | {peak:.2f} | {seconds:.2f} |")
        except torch.OutOfMemoryError as err:
            rows.append(f"| {depth[0]} + {depth[1]} | fp8_e4m3fn | {mode} | {weights:.2f} | out of memory | "
                        f"{str(err).splitlines()[0][:60]} |")
            torch.cuda.empty_cache()
        print(rows[-1], flush=True)
    del net
    return rows


def write_checkpoints(geometry, folder: Path, smoke: bool) -> tuple[str, str]:
    """Random SD1.5 UNet and VAE as safetensors in ComfyUI's folders (names returned)."""
    import comfy.utils  # noqa: F401
    import safetensors.torch
    latent = 8
    unet, _, _, _ = geometry.build_unet("sd15", latent, "fp32")
    (folder / "diffusion_models").mkdir(parents=True, exist_ok=True)
    (folder / "vae").mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file({k: v.half().contiguous() for k, v in unet.state_dict().items()},
                                folder / "diffusion_models" / "sd15_random.safetensors")
    from comfy.ldm.models.autoencoder import AutoencoderKL
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    vae = AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    geometry.init_weights_(vae)
    safetensors.torch.save_file({k: v.contiguous() for k, v in vae.state_dict().items()},
                                folder / "vae" / "sd15_vae_random.safetensors")
    return "sd15_random.safetensors", "sd15_vae_random.safetensors"


def node_rows(geometry, pack, args, device) -> list[str]:
    import torch
    import folder_paths
    import nodes
    from rewards_bench import clip_l14_aesthetic
    folder = Path(tempfile.mkdtemp(prefix="psi_gpu_models_"))
    unet_name, vae_name = write_checkpoints(geometry, folder, args.smoke)
    folder_paths.add_model_folder_path("diffusion_models", str(folder / "diffusion_models"))
    folder_paths.add_model_folder_path("vae", str(folder / "vae"))
    side = 64 if args.smoke else 512
    reward = clip_l14_aesthetic()
    smc = pack.nodes.smc_sampler.PsiSMCSampler
    cond = [[torch.randn(1, 77, 768), {}]]
    uncond = [[torch.zeros(1, 77, 768), {}]]
    latent = {"samples": torch.zeros(1, 4, side // 8, side // 8)}
    rows = ["| weights | memory mode | config | K | NFE | s per NFE | device peak GiB (above start) |",
            "|---|---|---|---|---|---|---|"]
    configs = [("grad batch 1", 1, None), ("grad batch 2", 2, None), ("grad batch 4", 4, None),
               ("one at a time (grad 1, forward 1)", 1, 1)]
    deadline = time.time() + args.budget_s
    particles = 2 if args.smoke else 8
    if args.smoke:
        configs = configs[:1]
    for weight_dtype in ("default",) if args.smoke else ("default", "fp8_e4m3fn"):
        (model,) = nodes.UNETLoader().load_unet(unet_name, weight_dtype)
        (vae,) = nodes.VAELoader().load_vae(vae_name)
        dynamic = getattr(model, "is_dynamic", lambda: False)()
        for memory in ("fast", "low") if args.smoke else ("fast", "balanced", "low"):
            for label, grad_batch, forward_batch in configs:
                if time.time() > deadline:
                    rows.append(f"| {weight_dtype} | {memory} | {label} | {particles} | — | skipped (time budget) | — |")
                    continue
                patch = contextlib.nullcontext()
                if forward_batch is not None:
                    bridge = pack.comfy_host.sampler_bridge.SamplerBridge
                    original = bridge.__init__

                    def init(self, *a, _orig=original, **kw):
                        _orig(self, *a, **kw)
                        self.forward_batch_size = 1
                    patch = _patched(bridge, "__init__", init)
                with torch.inference_mode(), patch, DevicePeak() as peak:
                    start = time.perf_counter()
                    out = smc.execute(model, 0, 2, "normal", 1.0, cond, uncond, 4.0, latent, vae, reward, particles, 0.1,
                                      0.5, "systematic", 1.0, 1.0, False, grad_batch, "best", memory=memory)
                    seconds = time.perf_counter() - start
                nfe = int(sum(out.args[1].nfe.values()))
                rows.append(f"| {weight_dtype} (dynamic VRAM: {dynamic}) | {memory} | {label} | {particles} | {nfe} | "
                            f"{seconds / max(nfe, 1):.3f} | {(peak.peak - peak.start) / 2 ** 30:.2f} |")
                print(rows[-1], flush=True)
    return rows


@contextlib.contextmanager
def _patched(owner, name, value):
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfy", required=True, type=Path, help="the ComfyUI 0.33.0 source folder")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, any device (checks the script)")
    parser.add_argument("--budget-s", type=float, default=300.0, help="time for part 2 before it skips the rest")
    parser.add_argument("--skip", default="", help="comma list of parts,flux,node to skip")
    args = parser.parse_args()
    geometry, pack = setup(args.comfy, args.smoke)
    import torch
    from psi_sampler.comfy_host.gradients import training_switch
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    skip = set(filter(None, args.skip.split(",")))
    text = [f"## GPU: look-ahead memory per mode and NFE cost ({time.strftime('%Y-%m-%d')})", "",
            f"Device: {name}; torch {torch.__version__}; ComfyUI {args.comfy.name}; smoke={args.smoke}.", ""]
    started = time.time()
    for key, rows in (("parts", part_rows), ("flux", flux_rows), ("node", node_rows)):
        if key in skip:
            continue
        try:
            if key == "node":  # the sampler node switches ComfyUI's training mode per gradient pass itself
                body = rows(geometry, pack, args, device)
            else:  # the parts' passes are gradient passes: ComfyUI's training mode on, as the bridge sets it
                with training_switch():
                    body = rows(geometry, args, device)
        except Exception as err:  # one part failing must not lose the others' figures
            body = [f"{key}: failed: {type(err).__name__}: {str(err)[:300]}"]
            print(body[0], flush=True)
        text += body + [""]
    text.append(f"Command: `bash bench/gpu_memory.sh` ({time.time() - started:.0f} s).")
    output = "\n".join(text)
    print(output)
    if args.out:
        args.out.write_text(output + "\n")


if __name__ == "__main__":
    main()
