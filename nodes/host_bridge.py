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
* Memory: the model, its additional models and the VAE are loaded together with
  an estimate that accounts for the gradient pass; the reward's modules are moved
  to the compute device for the run and moved back afterwards (also on failure).
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import torch

import comfy.model_management as model_management
import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils

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


# --------------------------------------------------------------------------- checks


def model_family(model_sampling) -> str:
    """"eps" (EPS, V-prediction, EDM, x0: x = x0 + σε) or "flow" (CONST: x = (1−σ)x0 + σε)."""
    if isinstance(model_sampling, comfy.model_sampling.CONST):
        return "flow"
    if isinstance(model_sampling, comfy.model_sampling.EPS):
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
    samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
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
    return list(comfy.samplers.SCHEDULER_NAMES)


def schedule(model, scheduler: str, steps: int, denoise: float) -> torch.Tensor:
    """KSampler's sigmas for `steps` steps at `denoise` (1-D CPU float32, ends at 0)."""
    if denoise <= 0.0:
        raise HostInputError(f"denoise must be > 0; got {denoise}")
    model_sampling = model.get_model_object("model_sampling")
    if denoise > 0.9999:
        return comfy.samplers.calculate_sigmas(model_sampling, scheduler, steps).cpu().float()
    sigmas = comfy.samplers.calculate_sigmas(model_sampling, scheduler, int(steps / denoise)).cpu().float()
    return sigmas[-(steps + 1):]


def cfg_guider(model, positive, negative, cfg: float):
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return guider


def make_sampler(function: Callable) -> comfy.samplers.KSAMPLER:
    """A SAMPLER from a k-diffusion sampler function `fn(model, x, sigmas, extra_args, callback, disable)`."""
    return comfy.samplers.KSAMPLER(function)


def sample_with(guider, noise: torch.Tensor, latent_image: torch.Tensor, sigmas: torch.Tensor,
                function: Callable, seed: int, callback=None) -> torch.Tensor:
    """Run `function` as the sampler of ComfyUI's loop; returns the samples
    (VAE latent space) on the intermediate device."""
    samples = guider.sample(noise, latent_image, make_sampler(function), sigmas, callback=callback,
                            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    return samples.to(model_management.intermediate_device())


def evaluation_source(guider, vae, reward) -> tuple:
    """Identity of what a look-ahead evaluation depends on (model and its patches,
    the conditioning that is used, guidance numbers, VAE, reward), to decide whether
    a cached evaluation can be reused. With plain CFG at cfg 1 the negative is not
    evaluated (ComfyUI's cfg1 optimisation), so CFGGuider(cfg=1) and BasicGuider agree."""
    patcher = guider.model_patcher
    conds = dict(getattr(guider, "original_conds", {}))
    predict = getattr(type(guider), "predict_noise", None)
    standard = predict is comfy.samplers.CFGGuider.predict_noise
    cfg = float(getattr(guider, "cfg", 1.0))
    if standard and math.isclose(cfg, 1.0) and not guider.model_options.get("disable_cfg1_optimization", False):
        conds.pop("negative", None)
    used = tuple((key, tuple(id(c.get("cross_attn")) for c in value)) for key, value in sorted(conds.items()))
    numbers = tuple(sorted((k, v) for k, v in vars(guider).items()
                           if isinstance(v, (int, float)) and not isinstance(v, bool)))
    kind = "cfg" if standard else getattr(predict, "__qualname__", repr(predict))
    return (id(patcher), getattr(patcher, "patches_uuid", None), kind, numbers, used, id(vae), id(reward))


def check_interrupt() -> None:
    model_management.throw_exception_if_processing_interrupted()


def intermediate_device() -> torch.device:
    return model_management.intermediate_device()


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
            evaluation = self._inner(x, sigma, need_grad)
        except RuntimeError as err:
            if not (need_grad and _is_inplace_error(err)) or self._bridge.clone_saved:
                raise
            LOG.info("psi: the model updates activations in place; cloning saved activations for gradients")
            self._bridge.clone_saved = True
            self._bridge.retried = True
            _INPLACE_MODEL_CLASSES.add(self._bridge.model_class)
            evaluation = self._inner(x, sigma, need_grad)
        self._bridge.last_evaluation = evaluation
        return evaluation


class SamplerBridge:
    """Look-ahead reward and gradient for one call of a sampler function.

    model: the k-diffusion model handed to the sampler function (ComfyUI's
    KSamplerX0Inpaint: `model.inner_model` is the guider, `.inner_model.inner_model`
    the BaseModel). Use as a context manager: `prepare` on entry loads models and
    places the reward; exit moves the reward back, also when the run fails.
    """

    def __init__(self, model, extra_args: dict | None, vae, reward, grad_batch_size: int,
                 forward_batch_size: int | None = None):
        self.model = model
        self.guider = model.inner_model
        self.base = self.guider.inner_model
        self.patcher = self.guider.model_patcher
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
        patchers = [self.patcher, *getattr(self.guider, "loaded_models", []), self.vae.patcher]
        with torch.inference_mode(False):
            model_management.load_models_gpu(patchers, memory_required=memory, minimum_memory_required=memory)
            self._place_reward()
            self.ensure_gradient_ready()
        return self

    def release(self) -> None:
        """Move the reward back where it was and drop cached tensors."""
        self.last_evaluation = None
        if self._reward_home is not None:
            with torch.inference_mode(False):
                self.reward.to(self._reward_home)
            self._reward_home = None
        model_management.soft_empty_cache()

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
        modules = [self.base, self.vae.first_stage_model]
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
        images = self.vae.first_stage_model.decode(latent)
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
        max_denoise = comfy.samplers.Sampler().max_denoise(self.guider, sigmas)
        return start_map(self.family, float(sigmas[0]), self.latent_image, max_denoise)

