"""The Ψ sampler functions that run inside ComfyUI's sampling loop.

Both have the k-diffusion signature `fn(model, x, sigmas, extra_args, callback,
disable)`: `model` is ComfyUI's CFG-combined denoiser, `x` [K, C, H, W] the
starting states ComfyUI made from the NOISE with `noise_scaling`, `sigmas` the
schedule on the model's device. All maths is the core's; these functions wire it
to the host package's sampler bridge, progress and events, and leave what the node needs in a
`RunOutcome`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch

from ..comfy_host import taesd
from ..comfy_host.checks import check_reward, check_run_memory, run_memory_limit
from ..comfy_host.events import show_text
from ..comfy_host.progress import MCMCProgress, SMCProgress
from ..comfy_host.sampler_bridge import SamplerBridge
from ..comfy_host.sampling import evaluation_source
from ..psi_core import InitialConfig, InitialParticles, SMCConfig, SMCResult, Trace, draw_initial, run_smc
from ..psi_core.names import MCMC_KERNELS, PRIOR, TOPK
from ..visualizer.convert import choose_steps
from .particles import PsiParticles, stage_generator

LOG = logging.getLogger("psi_sampler")


@dataclass
class RunOutcome:
    """What a sampler function leaves for its node."""

    particles: PsiParticles | None = None
    result: SMCResult | None = None


def initial_function(config: InitialConfig, grad_batch_size: int, vae, reward, generator: torch.Generator,
                     outcome: RunOutcome, lookahead_decoder: str = "vae",
                     memory: str = "fast"):
    """Sampler function drawing the K initial particles at sigmas[0] into
    `outcome.particles`; returns x unchanged (its node ignores the samples).
    lookahead_decoder: vae | taesd, the decoder of the chains' look-ahead (comfy_host.taesd)."""
    config = config.validated()
    taesd.check_option(lookahead_decoder)

    counts = {"particles": config.num_particles}
    if config.method in MCMC_KERNELS:
        counts["chains"] = config.num_chains
    if config.method == TOPK:
        counts["topk_candidates"] = config.topk_candidates or 4 * config.num_particles
    largest = max(counts, key=counts.get)

    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        check_run_memory(counts[largest], tuple(x.shape[1:]), 0, grad_batch_size, run_memory_limit(), largest)
        if config.method in MCMC_KERNELS:
            check_reward(reward, needs_gradient=True, purpose=f"the {config.method} initial method")
        with SamplerBridge(model, extra_args, vae, reward, grad_batch_size, memory=memory) as bridge:
            _use_decoder(bridge, lookahead_decoder)
            bridge.prepare(tuple(x.shape))
            look = bridge.lookahead()
            progress = MCMCProgress(bridge.patcher, config.mcmc_steps, bridge, look.counter)
            initial = draw_initial(config, look, bridge.start(sigmas), tuple(x.shape[1:]),
                                   float(sigmas[0]), generator, bridge.device, on_iteration=progress)
            initial.trace.latent_format = bridge.latent_format_name
            source = (*evaluation_source(bridge.guider, vae, reward), lookahead_decoder)
            outcome.particles = PsiParticles.from_initial(initial, bridge.family, source)
        show_text(initial_summary(config.method, config.num_particles, initial.trace))
        return x

    return sample


def initial_summary(method: str, num_particles: int, trace: Trace) -> str:
    """The initial sampler's node text: particles (distinct ones where MCMC can repeat a state),
    MCMC acceptance, final step size δ and how δ was tuned."""
    text = f"{method}: {num_particles} particles"
    if trace.distinct_initial is not None:
        text += f" ({trace.distinct_initial} distinct)"
    if trace.acceptance is not None:
        text += f" · acceptance {trace.acceptance:.2f} · δ {trace.final_step_size:.3g} ({trace.adaptation})"
    return text


def smc_summary(trace: Trace) -> str:
    """The SMC node's closing text: smallest ESS, where the tempering λ reached 1, and
    how often the guided shift was clipped."""
    lambdas = trace.lambdas
    text = f"SMC done · min ESS {trace.min_ess:.2f}" if trace.min_ess is not None else "SMC done"
    if lambdas:
        at_one = next(i for i, lam in enumerate(lambdas) if lam >= 1.0)
        text += f" · λ from {lambdas[0]:.2g}, 1 at step {at_one}/{len(lambdas) - 1}"
    clipped = [r.clipped for r in trace.smc]
    if clipped and max(clipped) > 0:
        text += f" · shift clipped {sum(clipped) / len(clipped):.0%} of particle-steps"
    return text


def _use_decoder(bridge: SamplerBridge, lookahead_decoder: str) -> None:
    """Give the bridge its look-ahead decoder (TAESD of the model's latent format, or the VAE);
    refused with the option's name before any look-ahead is evaluated."""
    bridge.lookahead_decoder = taesd.lookahead_decoder(lookahead_decoder, bridge.base.latent_format, bridge.device)


def smc_function(config: SMCConfig, grad_batch_size: int, vae, reward, outcome: RunOutcome,
                 particles: PsiParticles | None = None, generator: torch.Generator | None = None,
                 trace_steps: int = 0, lookahead_decoder: str = "vae",
                 memory: str = "fast"):
    """Sampler function running the SMC from the K states in x (or from `particles`,
    the Ψ initial particles those states were made from); returns the output latents.

    generator: the node's "smc" stream; None derives it from the sampling seed
    (SamplerCustomAdvanced passes the NOISE's seed).
    trace_steps: how many steps (evenly spaced, the last included) keep their
    predicted latents in the trace for the visualizer.
    lookahead_decoder: vae | taesd, the decoder of the intermediate look-aheads (comfy_host.taesd);
    the final particles are always scored through the VAE;
    memory: the gradient passes' memory mode (comfy_host.memory_modes)."""
    config = config.validated()
    taesd.check_option(lookahead_decoder)

    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        check_run_memory(x.shape[0], tuple(x.shape[1:]), min(int(trace_steps or 0), len(sigmas)), grad_batch_size,
                         run_memory_limit())
        check_reward(reward, needs_gradient=config.guided, purpose="guided SMC (guidance > 0)")
        gen = generator or stage_generator(int((extra_args or {}).get("seed") or 0), "smc")
        with SamplerBridge(model, extra_args, vae, reward, grad_batch_size, memory=memory) as bridge:
            _use_decoder(bridge, lookahead_decoder)
            bridge.prepare(tuple(x.shape))
            source = (*evaluation_source(bridge.guider, vae, reward), lookahead_decoder)
            initial = _starting_particles(bridge, x, sigmas, particles, source)
            look = bridge.lookahead()
            progress = SMCProgress(callback, sigmas, look.counter)
            run_config = _recording(config, len(sigmas) - 1, trace_steps)
            result = run_smc(initial, sigmas, look, run_config, bridge.family, gen, on_step=progress.on_step)
            result.trace.latent_format = bridge.latent_format_name
            progress.finish(result.samples)
        outcome.result = result
        show_text(smc_summary(result.trace))
        return result.samples

    return sample


def _recording(config: SMCConfig, steps: int, trace_steps: int) -> SMCConfig:
    if not trace_steps or steps < 1:
        return config
    return dataclasses.replace(config, record_x0_steps=tuple(choose_steps(steps, int(trace_steps))))


def _starting_particles(bridge: SamplerBridge, x: torch.Tensor, sigmas: torch.Tensor,
                        particles: PsiParticles | None, source: tuple) -> InitialParticles:
    """The Ψ particles (checked against the states ComfyUI made) or prior particles x."""
    sigma0 = float(sigmas[0])
    if particles is None:
        start = bridge.start(sigmas)
        offset = 0.0 if start.offset is None else start.offset.to(x)
        eps = (x - offset) / start.scale
        return InitialParticles(PRIOR, eps, x, sigma0, None, None, Trace(method=PRIOR))
    particles.check_compatible(bridge.family, sigma0, tuple(x.shape[1:]))
    initial = particles.to_initial(x.device, source)
    tolerance = 1e-4 * max(1.0, float(x.abs().max()))
    same = x.shape[0] == particles.num_particles and torch.allclose(initial.x.to(x.dtype), x, rtol=1e-4,
                                                                    atol=tolerance)
    if not same:
        raise ValueError(
            f"the starting states are not the Ψ particles ({x.shape[0]} states for {particles.num_particles} "
            "particles): connect the Ψ Initial Sampler's NOISE to SamplerCustomAdvanced as well as to this "
            "sampler's initial_noise, with the same latent")
    if initial.evaluation is None and particles.evaluation is not None:
        LOG.warning("psi: the Ψ particles were scored with another model, conditioning, VAE, reward or look-ahead "
                    "decoder; scoring them again (their initial weights correct the chains' tilt to this look-ahead)")
    return initial
