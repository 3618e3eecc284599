"""Inputs shared by the Ψ sampler nodes (one definition, one tooltip each) and
their conversion to core configs."""

from __future__ import annotations

from comfy_api.latest import io

from ..comfy_host import memory_modes, taesd
from ..comfy_host.sampling import scheduler_names
from ..psi_core import DEFAULT_SCHEME, OUTPUTS, RESAMPLERS, SMCConfig
from ..psi_core.names import ANCESTRAL, BASE_KERNELS
from ..psi_core.validation import integer_at_least
from .types import PsiReward

MAX_SEED = 0xFFFFFFFFFFFFFFFF


def conditioning_inputs() -> list[io.Input]:
    return [
        io.Model.Input("model", tooltip="The diffusion or flow model (EPS, V-prediction or flow/CONST)."),
        io.Conditioning.Input("positive", tooltip="Conditioning describing what to include in the image."),
        io.Conditioning.Input("negative", tooltip="Conditioning describing what to exclude from the image."),
        io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01,
                       tooltip="Classifier-free guidance scale, as in KSampler (1.0 skips the negative pass; "
                               "use 1.0 for FLUX)."),
    ]


def reward_inputs() -> list[io.Input]:
    return [
        io.Vae.Input("vae", tooltip="The model's VAE: predicted latents are decoded with it (with gradients) "
                                    "before the reward scores them."),
        PsiReward.Input("reward", tooltip="The reward r(image) to align to (a Ψ reward loader); higher is better."),
    ]


def seed_input() -> io.Input:
    return io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True,
                        tooltip="Seed of every random draw of this node; the same seed gives the same output.")


def schedule_inputs(steps_tooltip: str) -> list[io.Input]:
    return [
        io.Int.Input("steps", default=20, min=1, max=10000, tooltip=steps_tooltip),
        io.Combo.Input("scheduler", options=scheduler_names(), default="simple",
                       tooltip="The noise schedule, as in KSampler."),
        io.Float.Input("denoise", default=1.0, min=0.01, max=1.0, step=0.01,
                       tooltip="How much of the schedule to run, as in KSampler: below 1.0 the input latent is "
                               "kept partly (img2img)."),
    ]


def grad_batch_input() -> io.Input:
    return io.Int.Input("grad_batch_size", default=2, min=1, max=256,
                        tooltip="Particles per forward+backward pass through model, VAE and reward. Lower it if "
                                "you run out of memory; forward-only passes use twice as many.")


def smc_inputs() -> list[io.Input]:
    return [
        io.Float.Input("alpha", default=0.1, min=1e-4, max=1e4, step=0.001, round=False,
                       tooltip="Reward temperature α of the target p(x)·exp(r(x)/α): smaller follows the reward "
                               "more strongly (and resamples more)."),
        io.Float.Input("ess_threshold", default=0.5, min=0.0, max=1.0, step=0.05,
                       tooltip="Resample when the effective sample size falls below this fraction of the "
                               "particles (0 never resamples)."),
        io.Combo.Input("resampling", options=list(RESAMPLERS), default=DEFAULT_SCHEME,
                       tooltip="Resampling scheme: systematic (default, lowest variance), stratified, "
                               "multinomial, residual or ssp."),
        io.Float.Input("eta", default=1.0, min=0.0, max=1.0, step=0.05,
                       tooltip="Ancestral noise of each step (1.0 = Euler ancestral). At 0 the steps are "
                               "deterministic and only resampling explores."),
        io.Float.Input("guidance", default=1.0, min=0.0, max=1000.0, step=0.1,
                       tooltip="Scale γ of the reward-gradient shift of each step's proposal (0 = no gradient, "
                               "proposals from the model itself)."),
        io.Boolean.Input("gradient_free", default=False,
                         tooltip="FK-steering style: propose from the model and weight by reward differences "
                                 "only. Forward passes only; works with rewards that have no gradient."),
        grad_batch_input(),
        io.Combo.Input("output", options=list(OUTPUTS), default="best",
                       tooltip="best: the particle with the highest final reward; all: every particle as a "
                               "batch; sample: one particle drawn by its final weight."),
    ]


def smc_control_inputs() -> list[io.Input]:
    """Tempering and the guided-shift control (appended after the older inputs so saved
    workflows keep their widget values)."""
    return [
        io.Boolean.Input("tempering", default=True, optional=True,
                         tooltip="Tempered twisting: the intermediate targets use λ·r̂/α with λ rising adaptively "
                                 "to 1 by the last noisy step, so a look-ahead that is over-confident at high noise "
                                 "does not collapse the weights. The final target is the same either way."),
        io.Float.Input("tempering_ess", default=0.99, min=0.01, max=0.999, step=0.01, round=False, optional=True,
                       tooltip="How cautiously λ rises: each raise keeps this fraction of the conditional ESS. "
                               "Higher is more cautious."),
        io.Float.Input("guidance_clip", default=1.0, min=0.0, max=1000.0, step=0.1, round=False, optional=True,
                       tooltip="Caps each particle's gradient shift at this many noise standard deviations (RMS "
                               "over the latent), so the guided proposal cannot overshoot and diverge; the "
                               "weights stay exact. 0 turns the cap off."),
    ]


def kernel_input() -> io.Input:
    """The base kernel of the SMC's steps (appended last so saved workflows keep their widget values)."""
    return io.Combo.Input(
        "kernel", options=list(BASE_KERNELS), default=ANCESTRAL, optional=True,
        tooltip="The model's own step that the SMC proposes from. ancestral (Euler ancestral, with eta): for "
                "ordinary models (SD1.5, SDXL, SD3.5, FLUX.1-dev, Chroma, Qwen-Image). lcm (re-noise the "
                "prediction to the next sigma, ComfyUI's lcm sampler; eta unused): for distilled few-step models "
                "(FLUX.1-schnell, Z-Image-Turbo, SDXL-Turbo, LCM) at their few steps.")


def lookahead_decoder_input() -> io.Input:
    """The look-ahead decoder option (appended last, so saved workflows keep their widget values)."""
    return io.Combo.Input(
        "lookahead_decoder", options=list(taesd.LOOKAHEAD_DECODERS), default="vae", optional=True,
        tooltip="Decoder of the intermediate look-ahead images the reward scores. vae: the model's VAE (exact, the "
                "slowest and most memory-hungry part of a gradient pass). taesd: ComfyUI's Tiny AutoEncoder from "
                "models/vae_approx (taesd, taesdxl, taesd3 or taef1, matched to the model): a fraction of the VAE's "
                "time and memory, but its images only approximate the VAE's, so guidance and weights are noisier. "
                "The final particles are always decoded and scored with the VAE, so the target is the same.")


def check_gradient_options(grad_batch_size, lookahead_decoder, memory) -> None:
    """Queue-time checks of the gradient passes' options shared by the sampler nodes (the
    model is not known yet: comfy_host.taesd and comfy_host.memory_modes check it later)."""
    integer_at_least("grad_batch_size", grad_batch_size, 1)
    if lookahead_decoder is not None:
        taesd.check_available(lookahead_decoder)
    if memory is not None:
        memory_modes.check_mode(memory)


def memory_input() -> io.Input:
    """The `memory` option (appended last, so saved workflows keep their widget values)."""
    return io.Combo.Input("memory", options=list(memory_modes.MODES), default=memory_modes.DEFAULT_MODE,
                          optional=True, tooltip=memory_modes.TOOLTIP)


def trace_steps_input() -> io.Input:
    return io.Int.Input("trace_steps", default=6, min=0, max=10000, optional=True,
                        tooltip="SMC steps whose predicted latents the trace keeps for the particle visualizer "
                                "(evenly spaced, always the last; 0 keeps none). Each costs K latents of memory.")


def smc_config(alpha: float, ess_threshold: float, resampling: str, eta: float, guidance: float,
               gradient_free: bool, output: str, tempering: bool = True, tempering_ess: float = 0.99,
               guidance_clip: float = 1.0, kernel: str = "ancestral") -> SMCConfig:
    """The validated core config (ValueError/TypeError with a message naming the input)."""
    return SMCConfig(alpha=alpha, ess_threshold=ess_threshold, resampling=resampling, eta=eta, guidance=guidance,
                     gradient_free=bool(gradient_free), output=output, tempering=bool(tempering),
                     tempering_ess=tempering_ess, guidance_clip=guidance_clip, kernel=kernel).validated()


#: the inputs of smc_config, in its order (the last four optional, with these defaults)
SMC_OPTIONAL_DEFAULTS = {"tempering": True, "tempering_ess": 0.99, "guidance_clip": 1.0, "kernel": "ancestral"}
SMC_OPTION_NAMES = ("alpha", "ess_threshold", "resampling", "eta", "guidance", "gradient_free", "output",
                    *SMC_OPTIONAL_DEFAULTS)


def smc_option_values(values: dict) -> tuple:
    """smc_config's arguments from a node's inputs by name (optional ones left out at their defaults)."""
    return tuple(values.get(name, SMC_OPTIONAL_DEFAULTS.get(name)) for name in SMC_OPTION_NAMES)
