"""The only module that touches ComfyUI's model, VAE and memory internals.

A Ψ sampler runs as a k-diffusion sampler function inside ComfyUI's own loop
(`guider.sample(...)`, what SamplerCustomAdvanced does), so ComfyUI loads the
model, prepares the conditioning, applies `noise_scaling` and
`process_latent_in/out`, and CFG, ControlNet, hooks and model patches behave as
in KSampler. Inside that function a `SamplerBridge` evaluates the look-ahead
reward of the core,

    r̂(x, σ) = reward(images),  images = (decode(process_latent_out(D(x, σ))) + 1) / 2

for a micro-batch x [B, C, H, W], and its gradient with respect to x:

* D is the sampler's model wrapper (`model(x, σ[B], **extra_args)`): CFG-combined x̂0
  in model latent space [B, C, H, W].
* decode is `vae.first_stage_model.decode` (not `VAE.decode`, whose out-of-memory
  fallback is tiled decoding under inference mode, which drops the gradient).
  Images are [B, 3, H·8, W·8] float32; the map [−1, 1] → [0, 1] is not clamped, so
  the gradient is the exact gradient of the function the weights use.
* The executor runs nodes under `torch.inference_mode()`, so weights loaded by
  ComfyUI are inference tensors that autograd cannot save. Before every gradient
  pass the bridge replaces each inference parameter/buffer by a normal clone made
  outside inference mode, module by module (the peak is one tensor), with
  `requires_grad=False`: gradients are only ever taken with respect to x.
* Models that update saved activations in place (FLUX's `x += ...` residuals) make
  backward fail; on that error the bridge switches to saved-tensor hooks that
  clone activations at save time (correct gradients, about twice the saved
  activation memory) and repeats the pass (later runs of that model class clone
  from the start). Tensors outside the graph are kept by reference with a
  version check, so an in-place change there still fails loudly.
* Gradient passes (forward and backward) run with ComfyUI's training switch on
  and, where ComfyUI streams weights with dynamic VRAM, through a non-dynamic copy
  of the model and VAE (see `gradient_pass` and `gradient_patcher`).
* Host compatibility: ComfyUI symbols are looked up when a node runs
  (`host_symbol`), so a host that lacks one still loads the pack and the node that
  needs it fails with one message naming the symbol and the tested range.
* Memory: the model, its additional models and the VAE are loaded together with
  an estimate that accounts for the gradient pass; the reward's modules are moved
  to the compute device for the run and moved back afterwards (also on failure).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
from typing import Callable, Iterator

import torch

import comfy.model_management as model_management

from ..comfy_host import memory_modes
from ..psi_core import Evaluation, Lookahead, NFECounter, StartMap, start_map

LOG = logging.getLogger("psi_sampler")

#: the gradient pass keeps activations (and, with the clone hooks, a copy of them)
#: and needs backward workspace: ComfyUI's no-grad estimate times this factor.
GRADIENT_MEMORY_FACTOR = 3.0

#: diffusion-model classes seen updating saved activations in place (learned at run
#: time, so later runs clone from their first gradient pass instead of repeating it)
_INPLACE_MODEL_CLASSES: set[type] = set()

#: ComfyUI blocks that add residuals in place into activations autograd has saved
#: (`x += gate * out`, `addcmul_`; ComfyUI 0.3.64). Models built from them (FLUX, Chroma,
#: HunyuanVideo, ...) clone saved activations from their first gradient pass; any
#: other model that does the same is caught by the retry in `_RetryingLookahead`.
INPLACE_BLOCKS = frozenset({
    "comfy.ldm.flux.layers.DoubleStreamBlock", "comfy.ldm.flux.layers.SingleStreamBlock",
    "comfy.ldm.chroma.layers.DoubleStreamBlock", "comfy.ldm.chroma.layers.SingleStreamBlock",
})

MASK_MESSAGE = ("inpainting masks are not supported by the Ψ samplers: the latent carries a noise_mask "
                "(from Set Latent Noise Mask / VAE Encode for Inpainting). Remove the mask, or use a plain "
                "KSampler for inpainting")


class HostInputError(ValueError):
    """A node input that cannot work with this model, VAE or reward (found before sampling)."""


# --------------------------------------------------------------------------- host compatibility

#: the ComfyUI versions the pack is tested against (oldest, newest)
TESTED_RANGE = ("0.3.64", "0.33.0")


class HostCompatibilityError(RuntimeError):
    """This ComfyUI lacks a symbol the pack needs (raised when a node runs, never at import)."""


def host_version() -> str:
    """ComfyUI's version string ("unknown" where the host does not say)."""
    try:
        return str(importlib.import_module("comfyui_version").__version__)
    except (ImportError, AttributeError):
        return "unknown"


def _version_key(version: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return None


def host_in_tested_range(version: str) -> bool | None:
    """Whether `version` lies in TESTED_RANGE (None when it cannot be parsed)."""
    key = _version_key(version)
    if key is None:
        return None
    return _version_key(TESTED_RANGE[0]) <= key <= _version_key(TESTED_RANGE[1])


def host_symbol(path: str):
    """The ComfyUI object at dotted `path` ("comfy.samplers.KSAMPLER"), or a
    HostCompatibilityError naming it, this host's version and the tested range."""
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise missing_symbol(path) from err


def missing_symbol(path: str) -> HostCompatibilityError:
    return HostCompatibilityError(
        f"this ComfyUI ({host_version()}) has no {path}, which psi-sampler needs; psi-sampler is tested "
        f"with ComfyUI {TESTED_RANGE[0]} – {TESTED_RANGE[1]}: use a ComfyUI in that range or update psi-sampler")


_WARNED: set[str] = set()  # compatibility warnings given once per process


def _log_untested_host() -> None:
    version = host_version()
    if host_in_tested_range(version) is not True:
        LOG.warning("psi-sampler: ComfyUI %s is outside the tested range %s – %s; the nodes load, and a "
                    "missing ComfyUI feature is reported when a node needs it", version, *TESTED_RANGE)


_log_untested_host()


# --------------------------------------------------------------------------- checks


def model_family(model_sampling) -> str:
    """"eps" (EPS, V-prediction, EDM, x0: x = x0 + σε) or "flow" (CONST: x = (1−σ)x0 + σε)."""
    if isinstance(model_sampling, host_symbol("comfy.model_sampling.CONST")):
        return "flow"
    if isinstance(model_sampling, host_symbol("comfy.model_sampling.EPS")):
        return "eps"
    raise HostInputError(
        f"the Ψ samplers support EPS/V-prediction and flow (CONST) models; this model samples with "
        f"{type(model_sampling).__name__}")


def family_of(model) -> str:
    """The family of a MODEL (ModelPatcher)."""
    return model_family(model.get_model_object("model_sampling"))


def prepare_latent(model, latent: dict) -> torch.Tensor:
    """The LATENT's samples [B, C, H, W] made to fit the model (empty latents get the
    model's channel count), or a clear error."""
    if not isinstance(latent, dict) or "samples" not in latent:
        raise HostInputError("latent_image must be a LATENT (a dict with 'samples')")
    if latent.get("noise_mask") is not None:
        raise HostInputError(MASK_MESSAGE)
    samples = host_symbol("comfy.sample.fix_empty_latent_channels")(model, latent["samples"])
    latent_format = model.get_model_object("latent_format")
    if getattr(latent_format, "latent_dimensions", 2) != 2 or samples.ndim != 4:
        raise HostInputError(
            f"the Ψ samplers work on image latents [B, C, H, W]; got shape {tuple(samples.shape)} for a "
            f"{type(latent_format).__name__} model")
    if samples.shape[1] != latent_format.latent_channels:
        raise HostInputError(
            f"the latent has {samples.shape[1]} channels but this model works on "
            f"{latent_format.latent_channels}-channel latents ({type(latent_format).__name__}); encode the "
            "image with this model's VAE or start from an Empty Latent Image")
    if min(samples.shape[2:]) < 2:
        raise HostInputError(f"the latent is too small for the model: {tuple(samples.shape)}")
    return samples


def check_vae(vae, model) -> None:
    """The VAE exists and decodes this model's latents (model: ModelPatcher or BaseModel)."""
    if vae is None or getattr(vae, "first_stage_model", None) is None:
        raise HostInputError("no VAE: the reward scores decoded images, so the Ψ samplers need a VAE "
                             "(this checkpoint has none; add a Load VAE node)")
    latent_format = (model.get_model_object("latent_format") if hasattr(model, "get_model_object")
                     else model.latent_format)
    if getattr(vae, "latent_dim", 2) != 2:
        raise HostInputError("the VAE is not an image VAE (it decodes video or audio latents)")
    if vae.latent_channels != latent_format.latent_channels:
        raise HostInputError(
            f"the VAE decodes {vae.latent_channels}-channel latents but the model makes "
            f"{latent_format.latent_channels}-channel latents ({type(latent_format).__name__}): "
            "use the VAE that belongs to this model")


def check_reward(reward, needs_gradient: bool, purpose: str) -> None:
    """A PSI_REWARD is connected, and has a gradient where `purpose` needs one."""
    if reward is None or not callable(reward):
        raise HostInputError("no reward: connect a PSI_REWARD (a Ψ reward loader node)")
    if needs_gradient and not getattr(reward, "differentiable", False):
        name = getattr(reward, "name", type(reward).__name__)
        raise HostInputError(
            f"the reward '{name}' has no gradient, but {purpose} needs one: turn on gradient_free (SMC), "
            "or use the topk or prior initial method")


# --------------------------------------------------------------------------- sampling plumbing


def scheduler_names() -> list[str]:
    """ComfyUI's scheduler names (read when the node schemas are built, so a host without
    them still loads the pack: the schedule is then refused when a node runs)."""
    try:
        return list(host_symbol("comfy.samplers.SCHEDULER_NAMES"))
    except HostCompatibilityError as err:
        if "scheduler_names" not in _WARNED:
            LOG.warning("psi-sampler: %s", err)
            _WARNED.add("scheduler_names")
        return ["simple"]


def schedule(model, scheduler: str, steps: int, denoise: float) -> torch.Tensor:
    """KSampler's sigmas for `steps` steps at `denoise` (1-D CPU float32, ends at 0)."""
    if denoise <= 0.0:
        raise HostInputError(f"denoise must be > 0; got {denoise}")
    model_sampling = model.get_model_object("model_sampling")
    calculate_sigmas = host_symbol("comfy.samplers.calculate_sigmas")
    if denoise > 0.9999:
        return calculate_sigmas(model_sampling, scheduler, steps).cpu().float()
    sigmas = calculate_sigmas(model_sampling, scheduler, int(steps / denoise)).cpu().float()
    return sigmas[-(steps + 1):]


def cfg_guider(model, positive, negative, cfg: float):
    guider = host_symbol("comfy.samplers.CFGGuider")(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return guider


def make_sampler(function: Callable):
    """A SAMPLER (comfy.samplers.KSAMPLER) from a k-diffusion sampler function
    `fn(model, x, sigmas, extra_args, callback, disable)`."""
    return host_symbol("comfy.samplers.KSAMPLER")(function)


def sample_with(guider, noise: torch.Tensor, latent_image: torch.Tensor, sigmas: torch.Tensor,
                function: Callable, seed: int, callback=None) -> torch.Tensor:
    """Run `function` as the sampler of ComfyUI's loop; returns the samples
    (VAE latent space) on the intermediate device."""
    samples = guider.sample(noise, latent_image, make_sampler(function), sigmas, callback=callback,
                            disable_pbar=not host_symbol("comfy.utils.PROGRESS_BAR_ENABLED"), seed=seed)
    return samples.to(intermediate_device())


def evaluation_source(guider, vae, reward) -> tuple:
    """Identity of what a look-ahead evaluation depends on (model and its patches,
    the conditioning that is used, guidance numbers, VAE, reward), to decide whether
    a cached evaluation can be reused. With plain CFG at cfg 1 the negative is not
    evaluated (ComfyUI's cfg1 optimisation), so CFGGuider(cfg=1) and BasicGuider agree."""
    patcher = guider.model_patcher
    conds = dict(getattr(guider, "original_conds", {}))
    predict = getattr(type(guider), "predict_noise", None)
    standard = predict is host_symbol("comfy.samplers.CFGGuider").predict_noise
    cfg = float(getattr(guider, "cfg", 1.0))
    if standard and math.isclose(cfg, 1.0) and not guider.model_options.get("disable_cfg1_optimization", False):
        conds.pop("negative", None)
    used = tuple((key, tuple(id(c.get("cross_attn")) for c in value)) for key, value in sorted(conds.items()))
    numbers = tuple(sorted((k, v) for k, v in vars(guider).items()
                           if isinstance(v, (int, float)) and not isinstance(v, bool)))
    kind = "cfg" if standard else getattr(predict, "__qualname__", repr(predict))
    return (id(patcher), getattr(patcher, "patches_uuid", None), kind, numbers, used, id(vae), id(reward))


def check_interrupt() -> None:
    host_symbol("comfy.model_management.throw_exception_if_processing_interrupted")()


def intermediate_device() -> torch.device:
    return host_symbol("comfy.model_management.intermediate_device")()


# --------------------------------------------------------------------------- gradients


def make_gradient_ready(module: torch.nn.Module) -> int:
    """Replace inference-tensor parameters and buffers of `module` by normal clones
    (module by module) and turn off weight gradients. Returns how many were replaced."""
    replaced = 0
    with torch.inference_mode(False), torch.no_grad():
        for sub in module.modules():
            for name, param in list(sub._parameters.items()):
                if param is None:
                    continue
                if param.is_inference():
                    sub._parameters[name] = torch.nn.Parameter(param.clone(), requires_grad=False)
                    replaced += 1
                elif param.requires_grad:
                    param.requires_grad_(False)
            for name, buf in list(sub._buffers.items()):
                if buf is not None and buf.is_inference():
                    sub._buffers[name] = buf.clone()
                    replaced += 1
    return replaced


# What a gradient pass needs on current hosts (ComfyUI 0.33.0, comfy-kitchen 0.2.31).
# comfy-kitchen registers its kernels as torch.library custom ops with fake (meta)
# implementations but no autograd formula (no register_autograd anywhere in the
# package), so any of them on the differentiated path fails in backward. Where the
# image models the pack supports reach them:
# - RoPE: comfy/ldm/flux/math.py (`apply_rope`, `apply_rope1`, imported by FLUX, Chroma,
#   Qwen-Image, HiDream, Lumina 2 / Z-Image, OmniGen2, ...) calls ck.apply_rope unless
#   `comfy.model_management.in_training` is set; comfy/ldm/lumina/model.py fuses q/k
#   RMSNorm + RoPE (ck.rms_rope, ck.rms_rope1) unless in_training. Both have eager paths.
# - Norms: comfy/rmsnorm.py is torch.nn.functional.rms_norm (autograd), not a kitchen op.
# - Linear layers: comfy/ops.py quantised layers that quantise their input (fp8, nvfp4,
#   mxfp8, int8) take `QuantLinearFunc` (ComfyUI's own torch.autograd.Function) when the
#   input requires grad; the INT8 activation-fusion path (`linear_input_act`,
#   ck.int8_linear) is skipped when in_training. Weight-only formats (AWQ W4A16) keep the
#   weight a QuantizedTensor and F.linear dispatches to a kitchen op (ck.gemv_awq_w4a16)
#   below autograd, so backward needs matmuls with that tensor subclass: untested (GPU-only
#   formats), expected to fail loudly if unsupported.
# - Attention: comfy/ldm/modules/attention.py uses PyTorch SDPA by default (autograd);
#   `--use-ck-attention` (ck.int8_attention) and `--use-sage-attention` have no backward
#   and in_training does not change them: with those flags gradient passes fail loudly.
# - Ungated kitchen calls (no eager path even in training): cosmos/predict2.py
#   (ck.rms_rope_split_half, Cosmos Predict2 / Anima) and minimax/vae.py: not supported for
#   gradients here. ComfyUI 0.3.64 has no comfy-kitchen and no `in_training`.
# So one switch covers every supported image family: `in_training`, which ComfyUI's own
# trainer sets around its loop (comfy_extras/nodes_train.py).


@contextlib.contextmanager
def training_switch() -> Iterator[None]:
    """`comfy.model_management.in_training` on for one gradient pass (forward and
    backward), then restored to what it was (deleted again on hosts that never had
    it), also when the pass raises or is interrupted."""
    had = hasattr(model_management, "in_training")
    previous = getattr(model_management, "in_training", False)
    model_management.in_training = True
    try:
        yield
    finally:
        if had:
            model_management.in_training = previous
        else:
            del model_management.in_training


def check_memory_mode(memory: str, diffusion_model, vae, vae_model=None) -> list:
    """The blocks the `memory` option checkpoints in gradient passes of this model and VAE,
    or a HostInputError naming the option, the class and what works (before sampling)."""
    try:
        return memory_modes.check(memory, diffusion_model, vae_model or getattr(vae, "first_stage_model", None))
    except ValueError as err:
        raise HostInputError(str(err)) from err


def is_dynamic(patcher) -> bool:
    """Whether ComfyUI streams this patcher's weights with dynamic VRAM (comfy-aimdo,
    `ModelPatcherDynamic`, 0.33 on NVIDIA by default); False on hosts without it."""
    probe = getattr(patcher, "is_dynamic", None)
    return bool(probe()) if callable(probe) else False


def gradient_patcher(patcher):
    """The patcher whose model a gradient pass runs through: `patcher` itself, or for a
    dynamic-VRAM patcher its non-dynamic delegate (`get_non_dynamic_delegate()`).

    Why not differentiate through a dynamic patcher: its weights stay in (pinned,
    possibly mmapped) host memory and are cast at op time into comfy-aimdo's virtual
    VRAM or a cast buffer that the next layers reuse (comfy/ops.py
    `cast_modules_with_vbar`, `resolve_cast_module_with_vbar`). Autograd would save
    those per-op weights for backward, where they may have been evicted or overwritten
    (no version counter sees it: silently wrong gradients), and weights cached resident
    from an earlier pass under the executor's inference mode are inference tensors that
    cannot be saved. Converting its parameters (make_gradient_ready) would also copy the
    whole model into RAM and drop the `_model_dtype` tags aimdo set on them. The
    delegate is a classic patcher over a second copy of the weights that ComfyUI reloads
    through the loader's `cached_patcher_init` (kept on the dynamic patcher for reuse,
    with the same patches and model options), loaded like any model before 0.33; the
    dynamic model keeps serving the sampler's forward-only passes unchanged. A delegate
    that is only partly loaded streams its weights through ComfyUI's per-stream cast
    buffers (`get_cast_buffer`); those are views of one tensor, so a saved weight that is
    overwritten before backward bumps its version and fails loudly in `_unpack_saved` or
    autograd's own check, never silently (not yet run on a GPU)."""
    if not is_dynamic(patcher):
        return patcher
    delegate = getattr(patcher, "get_non_dynamic_delegate", None)
    if delegate is None:
        raise missing_symbol("comfy.model_patcher.ModelPatcherDynamic.get_non_dynamic_delegate")
    try:
        return delegate()
    except RuntimeError as err:
        raise HostInputError(
            f"{type(patcher.model).__name__} is managed by ComfyUI's dynamic VRAM, and its loader left no way to "
            "reload it as a classic model (no cached_patcher_init), which reward gradients need. Load it with a "
            "core loader (Load Checkpoint, Load Diffusion Model, Load VAE) or start ComfyUI with "
            "--disable-dynamic-vram") from err


def _pack_saved(tensor: torch.Tensor):
    """Saved-tensor hook: copy activations (they may be updated in place later);
    keep other tensors by reference with their version for a check at unpack."""
    if tensor.requires_grad:
        return tensor.clone()
    if tensor.is_inference():
        return (tensor, None)
    return (tensor, tensor._version)


def _unpack_saved(packed):
    if isinstance(packed, torch.Tensor):
        return packed
    tensor, version = packed
    if version is not None and tensor._version != version:
        raise RuntimeError("a tensor saved for the reward gradient was modified by an inplace operation "
                           "outside the differentiated path; the gradient would be wrong")
    return tensor


def clone_saved_activations():
    """Context manager for a forward pass whose backward must survive in-place
    updates of activations: autograd saves clones of them (see the module docstring)."""
    return torch.autograd.graph.saved_tensors_hooks(_pack_saved, _unpack_saved)


def builds_on_inplace_blocks(module: torch.nn.Module) -> bool:
    """Whether `module` contains one of the INPLACE_BLOCKS."""
    return any(f"{type(m).__module__}.{type(m).__qualname__}" in INPLACE_BLOCKS for m in module.modules())


def _is_inplace_error(err: RuntimeError) -> bool:
    return "modified by an inplace operation" in str(err)


class _RetryingLookahead:
    """The core Lookahead, repeated once with activation-cloning hooks when the
    model updates saved activations in place; remembers the last evaluation (previews)."""

    def __init__(self, bridge: "SamplerBridge", inner: Lookahead):
        self._bridge = bridge
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __call__(self, x: torch.Tensor, sigma: float, need_grad: bool) -> Evaluation:
        try:
            evaluation = self._evaluate(x, sigma, need_grad)
        except RuntimeError as err:
            if not (need_grad and _is_inplace_error(err)) or self._bridge.clone_saved:
                raise
            LOG.info("psi: the model updates activations in place; cloning saved activations for gradients")
            self._bridge.clone_saved = True
            self._bridge.retried = True
            _INPLACE_MODEL_CLASSES.add(self._bridge.model_class)
            evaluation = self._evaluate(x, sigma, need_grad)
        self._bridge.last_evaluation = evaluation
        return evaluation

    def _evaluate(self, x: torch.Tensor, sigma: float, need_grad: bool) -> Evaluation:
        if not need_grad:
            return self._inner(x, sigma, need_grad)
        with self._bridge.gradient_pass():
            return self._inner(x, sigma, need_grad)


class SamplerBridge:
    """Look-ahead reward and gradient for one call of a sampler function.

    model: the k-diffusion model handed to the sampler function (ComfyUI's
    KSamplerX0Inpaint: `model.inner_model` is the guider, `.inner_model.inner_model`
    the BaseModel). Use as a context manager: `prepare` on entry loads models and
    places the reward; exit moves the reward back, also when the run fails.
    """

    def __init__(self, model, extra_args: dict | None, vae, reward, grad_batch_size: int,
                 forward_batch_size: int | None = None, memory: str = "fast"):
        self.model = model
        self.guider = model.inner_model
        self.base = self.guider.inner_model
        self.patcher = self.guider.model_patcher
        # what gradient passes run through (the non-dynamic delegates under dynamic VRAM; set by prepare)
        self.grad_patcher, self.grad_base = self.patcher, self.base
        self.grad_vae_patcher, self.grad_vae_model = None, None
        self.in_gradient_pass = False
        self.extra_args = dict(extra_args or {})
        if self.extra_args.get("denoise_mask") is not None:
            raise HostInputError(MASK_MESSAGE)
        self.extra_args["denoise_mask"] = None
        self.family = model_family(self.base.model_sampling)
        check_vae(vae, self.base)
        check_reward(reward, needs_gradient=False, purpose="sampling")
        self.vae = vae
        self.reward = reward
        self.grad_batch_size = int(grad_batch_size)
        self.forward_batch_size = int(forward_batch_size or 2 * grad_batch_size)
        self.device = self.patcher.load_device
        self.latent_image = getattr(model, "latent_image", None)  # model space, after process_latent_in
        diffusion_model = getattr(self.base, "diffusion_model", self.base)
        self.model_class = type(diffusion_model)
        if self.model_class not in _INPLACE_MODEL_CLASSES and builds_on_inplace_blocks(diffusion_model):
            _INPLACE_MODEL_CLASSES.add(self.model_class)
        self.clone_saved = self.model_class in _INPLACE_MODEL_CLASSES
        self.memory = memory
        self.checkpoint_blocks = check_memory_mode(memory, diffusion_model, vae)
        self.retried = False  # set when a gradient pass had to be repeated with cloning
        self.last_evaluation: Evaluation | None = None
        self.converted = 0
        self._reward_home: torch.device | None = None
        self._reward_device = self.device

    # -- lifetime
    def __enter__(self) -> "SamplerBridge":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def prepare(self, shape: tuple[int, ...]) -> "SamplerBridge":
        """Load model, additional models and VAE with a gradient-pass estimate for a
        micro-batch of particles of `shape` [K, C, H, W]; place the reward."""
        memory = self.memory_estimate(shape)
        with torch.inference_mode(False):
            self._choose_gradient_models()
            patchers = [self.patcher, *getattr(self.guider, "loaded_models", []), self.vae.patcher]
            patchers += [p for p in (self.grad_patcher, self.grad_vae_patcher) if p not in patchers]
            load_models_gpu = host_symbol("comfy.model_management.load_models_gpu")
            load_models_gpu(patchers, memory_required=memory, minimum_memory_required=memory)
            self._place_reward()
            self.ensure_gradient_ready()
        return self

    def _choose_gradient_models(self) -> None:
        """Model and VAE of the gradient passes (gradient_patcher's choice), made once per run."""
        self.grad_patcher = gradient_patcher(self.patcher)
        self.grad_base = self.grad_patcher.model
        if self.grad_patcher is not self.patcher:
            if hasattr(self.base, "latent_shapes"):
                self.grad_base.latent_shapes = self.base.latent_shapes  # set by CFGGuider.inner_sample (0.33)
            self.grad_patcher.pre_run()  # as CFGGuider.outer_sample does for its patcher: current_patcher
        self.grad_vae_patcher = gradient_patcher(self.vae.patcher)
        self.grad_vae_model = self.grad_vae_patcher.model
        self.checkpoint_blocks = check_memory_mode(
            self.memory, getattr(self.grad_base, "diffusion_model", self.grad_base), self.vae, self.grad_vae_model)

    @contextlib.contextmanager
    def gradient_pass(self) -> Iterator[None]:
        """One gradient pass (forward and backward): ComfyUI's training switch on, the
        guider's model swapped for the gradient model where they differ, and the `memory`
        mode's blocks checkpointed (comfy_host.memory_modes); all restored on exit, also when
        the pass fails or is interrupted. Out of memory re-raises naming the options that lower it."""
        guider_model = self.guider.inner_model
        recompute = lambda: clone_saved_activations() if self.clone_saved else contextlib.nullcontext()  # noqa: E731
        with training_switch(), memory_modes.checkpointed(self.checkpoint_blocks, recompute):
            self.in_gradient_pass = True
            self.guider.inner_model = self.grad_base
            try:
                yield
            except torch.OutOfMemoryError as err:
                raise memory_modes.out_of_memory(err, self.memory, self.grad_batch_size,
                                                 self.model_class.__name__) from err
            finally:
                self.guider.inner_model = guider_model
                self.in_gradient_pass = False

    @property
    def latent_format_name(self) -> str:
        """The name of the model's latent format (a class of comfy.latent_formats: scale, shift and
        preview colours), recorded in traces so they can be decoded without the model."""
        return type(self.base.latent_format).__name__

    def release(self) -> None:
        """Move the reward back where it was and drop cached tensors."""
        self.last_evaluation = None
        if self.grad_patcher is not self.patcher:
            self.grad_patcher.cleanup()
        if self._reward_home is not None:
            with torch.inference_mode(False):
                self.reward.to(self._reward_home)
            self._reward_home = None
        host_symbol("comfy.model_management.soft_empty_cache")()

    def memory_estimate(self, shape: tuple[int, ...]) -> float:
        """Bytes for one gradient micro-batch: ComfyUI's forward estimates for the
        model (cond + uncond) and the VAE decoder times GRADIENT_MEMORY_FACTOR, plus
        the reward's weights."""
        per_particle = list(shape[1:])
        batch = self.grad_batch_size
        model_bytes = self.base.memory_required([2 * batch, *per_particle])
        vae_bytes = self.vae.memory_used_decode([batch, *per_particle], self.vae.vae_dtype)
        reward_bytes = self.reward.memory_bytes() if hasattr(self.reward, "memory_bytes") else 0
        return GRADIENT_MEMORY_FACTOR * (model_bytes + vae_bytes) + reward_bytes

    def _place_reward(self) -> None:
        modules = list(self.reward.modules()) if hasattr(self.reward, "modules") else []
        if not modules:
            return
        home = self.reward.device if hasattr(self.reward, "device") else torch.device("cpu")
        if home != self.device:
            self.reward.to(self.device)
            self._reward_home = home
        self._reward_device = self.device

    def ensure_gradient_ready(self) -> int:
        """Convert inference-tensor weights of the model, its additional models, the
        VAE and the reward (cheap when nothing changed since the last call)."""
        vae_model = self.vae.first_stage_model if self.grad_vae_model is None else self.grad_vae_model
        modules = [self.grad_base, vae_model]
        # additional models (ControlNet, ...) are differentiated as they are: no delegate is made
        # for them, so under dynamic VRAM they are untested (a GPU-only check)
        modules += [p.model for p in getattr(self.guider, "loaded_models", [])
                    if isinstance(getattr(p, "model", None), torch.nn.Module)]
        modules += list(self.reward.modules()) if hasattr(self.reward, "modules") else []
        replaced = sum(make_gradient_ready(m) for m in modules)
        self.converted += replaced
        return replaced

    # -- the look-ahead
    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W], σ [B] -> CFG-combined x̂0 [B, C, H, W] (model latent space)."""
        if torch.is_grad_enabled() and x.requires_grad:
            self.ensure_gradient_ready()
            if self.clone_saved:
                with clone_saved_activations():
                    return self.model(x, sigma, **self.extra_args)
        return self.model(x, sigma, **self.extra_args)

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """x̂0 [B, C, h, w] (model space) -> images [B, 3, H, W] float32, (decoded + 1)/2, unclamped."""
        latent = self.base.process_latent_out(x0)
        latent = latent.to(device=self.vae.device, dtype=self.vae.vae_dtype)
        vae_model = self.grad_vae_model if self.in_gradient_pass else self.vae.first_stage_model
        images = vae_model.decode(latent)
        return (images.float() + 1.0) / 2.0

    def latent_reward(self, x0: torch.Tensor) -> torch.Tensor:
        """x̂0 [B, C, h, w] -> r [B]."""
        images = self.decode(x0).to(self._reward_device)
        return self.reward(images)

    def lookahead(self, counter: NFECounter | None = None) -> _RetryingLookahead:
        inner = Lookahead(self.denoise, self.latent_reward, self.grad_batch_size, self.forward_batch_size,
                          counter=counter, before_batch=check_interrupt)
        return _RetryingLookahead(self, inner)

    def start(self, sigmas: torch.Tensor) -> StartMap:
        """ComfyUI's noise_scaling at sigmas[0] for this run's latent image."""
        max_denoise = host_symbol("comfy.samplers.Sampler")().max_denoise(self.guider, sigmas)
        return start_map(self.family, float(sigmas[0]), self.latent_image, max_denoise)

