"""The look-ahead reward and its gradient inside ComfyUI's sampling loop.

Inside a sampler function (see `sampling`) a `SamplerBridge` evaluates the look-ahead
reward of the core (Yoon et al., arXiv 2506.01320),

    r̂(x, σ) = reward(images),  images = (decode(process_latent_out(D(x, σ))) + 1) / 2

for a micro-batch x [B, C, H, W], and its gradient with respect to x:

* D is the sampler's model wrapper (`model(x, σ[B], **extra_args)`): CFG-combined x̂0
  in model latent space [B, C, H, W].
* decode is `vae.first_stage_model.decode` (not `VAE.decode`, whose out-of-memory
  fallback is tiled decoding under inference mode, which drops the gradient).
  Images are [B, 3, H·8, W·8] float32; the map [−1, 1] → [0, 1] is not clamped, so
  the gradient is the exact gradient of the function the weights use.
* Before every gradient pass the model's, VAE's and reward's inference-tensor weights
  are made usable by autograd (`gradients.make_gradient_ready`).
* Models that update saved activations in place (FLUX's `x += ...` residuals) make
  backward fail; on that error the bridge switches to saved-tensor hooks that clone
  activations at save time (`saved_activations`) and repeats the pass (later runs of
  that model class clone from the start).
* Gradient passes (forward and backward) run with ComfyUI's training switch on
  (`gradients.training_switch`) and, where ComfyUI streams weights with dynamic VRAM,
  through a non-dynamic copy of the model and VAE (`dynamic_vram.gradient_patcher`).
* Memory: the model, its additional models and the VAE are loaded together with
  an estimate that accounts for the gradient pass; the reward's weights are moved
  to the compute device for the run and moved back afterwards, also on failure
  (`memory.place_reward`).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator

import torch

from ..psi_core import Evaluation, Lookahead, NFECounter, StartMap, start_map
from . import gradient_support, memory_modes
from .checks import MASK_MESSAGE, HostInputError, check_memory_mode, check_reward, check_vae, model_family
from .compat import host_symbol
from .dynamic_vram import gradient_patcher
from .gradients import make_gradient_ready, training_switch
from .latent_tensors import make_latent_format_gradient_ready
from .memory import empty_cache, load_models, place_reward, return_reward
from .progress import check_interrupt
from .saved_activations import INPLACE_MODEL_CLASSES, builds_on_inplace_blocks, clone_saved_activations, \
    is_inplace_error

LOG = logging.getLogger("psi_sampler")

#: the gradient pass keeps activations (and, with the clone hooks, a copy of them)
#: and needs backward workspace: ComfyUI's no-grad estimate times this factor.
GRADIENT_MEMORY_FACTOR = 3.0


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
            op = gradient_support.op_without_backward(err) if need_grad else None
            if op is not None:
                bridge = self._bridge
                raise HostInputError(gradient_support.refusal_message(
                    bridge.model_class.__name__, type(bridge.vae.first_stage_model).__name__,
                    getattr(bridge.reward, "name", type(bridge.reward).__name__), op)) from err
            if not (need_grad and is_inplace_error(err)) or self._bridge.clone_saved:
                raise
            LOG.info("psi: the model updates activations in place; cloning saved activations for gradients")
            self._bridge.clone_saved = True
            self._bridge.retried = True
            INPLACE_MODEL_CLASSES.add(self._bridge.model_class)
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
        if self.model_class not in INPLACE_MODEL_CLASSES and builds_on_inplace_blocks(diffusion_model):
            INPLACE_MODEL_CLASSES.add(self.model_class)
        self.clone_saved = self.model_class in INPLACE_MODEL_CLASSES
        self.memory = memory
        self.checkpoint_blocks = check_memory_mode(memory, diffusion_model, vae)
        self.retried = False  # set when a gradient pass had to be repeated with cloning
        self.last_evaluation: Evaluation | None = None
        # an approximate look-ahead decoder (comfy_host.taesd); None: the VAE decodes every look-ahead
        self.lookahead_decoder: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.converted = 0
        self._reward_home: torch.device | None = None  # where place_reward found the reward's weights

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
            load_models(patchers, memory)
            home = place_reward(self.reward, self.device)
            if home is not None:  # a repeated prepare finds the reward placed: keep where it came from
                self._reward_home = home
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
        return_reward(self.reward, self._reward_home)
        self._reward_home = None
        empty_cache()

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
        replaced += make_latent_format_gradient_ready(self.base.latent_format)
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
        """x̂0 [B, C, h, w] or [B, C, 1, h, w] (model space) -> images [B, 3, H, W] float32,
        (decoded + 1)/2, unclamped (a 3-D VAE's [B, 3, 1, H, W] gives its one frame)."""
        latent = self.base.process_latent_out(x0)
        latent = latent.to(device=self.vae.device, dtype=self.vae.vae_dtype)
        vae_model = self.grad_vae_model if self.in_gradient_pass else self.vae.first_stage_model
        images = vae_model.decode(latent)
        if images.ndim == 5:
            images = images[:, :, 0]
        return (images.float() + 1.0) / 2.0

    def latent_reward(self, x0: torch.Tensor) -> torch.Tensor:
        """x̂0 [B, C, h, w] -> r [B]."""
        images = self.decode(x0).to(self.device)
        return self.reward(images)

    def approximate_reward(self, x0: torch.Tensor) -> torch.Tensor:
        """x̂0 [B, C, h, w] -> r̂ [B] through the approximate look-ahead decoder (not the VAE)."""
        return self.reward(self.lookahead_decoder(x0).to(self.device))

    def lookahead(self, counter: NFECounter | None = None) -> _RetryingLookahead:
        """The core look-ahead: through the VAE, or through `lookahead_decoder` with the VAE's
        exact reward kept for the final particles (the SMC's final weight corrects to it)."""
        if self.lookahead_decoder is None:
            reward, final = self.latent_reward, None
        else:
            reward, final = self.approximate_reward, self.latent_reward
        inner = Lookahead(self.denoise, reward, self.grad_batch_size, self.forward_batch_size,
                          counter=counter, before_batch=check_interrupt, final_reward=final)
        return _RetryingLookahead(self, inner)

    def start(self, sigmas: torch.Tensor) -> StartMap:
        """ComfyUI's noise_scaling at sigmas[0] for this run's latent image."""
        max_denoise = host_symbol("comfy.samplers.Sampler")().max_denoise(self.guider, sigmas)
        return start_map(self.family, float(sigmas[0]), self.latent_image, max_denoise)

