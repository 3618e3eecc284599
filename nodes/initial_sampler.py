"""PsiInitialSampler: the Ψ-Sampler's initial particles (pCNL by default).

Draws K starting noises ε from π(ε) ∝ N(ε; 0, I)·exp(r̂(x_0(ε), σ_0)/α_mcmc) with C
MCMC chains (or the prior / Top-K baselines) inside ComfyUI's sampling loop, at
the first sigma of the schedule the SMC will use.
"""

from __future__ import annotations

import torch

from comfy_api.latest import io

from ..comfy_host import memory_modes, taesd
from ..comfy_host.checks import HostInputError, check_memory_mode, check_reward, check_vae, prepare_latent
from ..comfy_host.memory import intermediate_device
from ..comfy_host.sampling import cfg_guider, sample_with, schedule
from ..psi_core import InitialConfig
from ..psi_core.names import INITIAL_METHODS, MCMC_KERNELS, PCNL
from ..psi_core.validation import integer_at_least, non_negative
from .declared import check_execution_inputs, validate
from .noise import PsiNoise
from .options import (check_gradient_options, conditioning_inputs, grad_batch_input, lookahead_decoder_input,
                      memory_input, reward_inputs, schedule_inputs, seed_input)
from .particles import PSI_KEY, stage_generator
from .runs import RunOutcome, initial_function
from .types import PsiTrace


def initial_config(method, particles, chains, burn_in, mcmc_steps, step_size, alpha_mcmc, grad_clip,
                   adapt_step_size, topk_candidates) -> InitialConfig:
    grad_clip = non_negative("grad_clip", grad_clip)  # 0 turns the clip off; NaN is refused, not read as off
    return InitialConfig(method=method, num_particles=particles, num_chains=chains, mcmc_steps=mcmc_steps,
                         burn_in=burn_in, step_size=step_size, alpha_mcmc=alpha_mcmc,
                         grad_clip=grad_clip if grad_clip > 0 else None,
                         adapt_step_size=bool(adapt_step_size), topk_candidates=topk_candidates).validated()


INITIAL_OPTION_NAMES = ("method", "particles", "chains", "burn_in", "mcmc_steps", "step_size", "alpha_mcmc",
                        "grad_clip", "adapt_step_size", "topk_candidates")


class PsiInitialSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PsiInitialSampler",
            display_name="Ψ Initial Sampler",
            category="sampling/psi",
            description=(
                "Draws K reward-aware starting particles for the Ψ SMC sampler: MCMC (pCNL by default) on the "
                "starting noise, targeting N(0, I)·exp(r̂/α_mcmc). Connect LATENT to Ψ SMC Sampler, or NOISE to "
                "SamplerCustomAdvanced (with Ψ SMC Sampler (custom) or any sampler)."),
            inputs=[
                *conditioning_inputs(),
                *reward_inputs(),
                io.Latent.Input("latent_image", tooltip="Latent of batch 1 giving the size (empty latent) or the "
                                                        "image to start from (img2img, with denoise < 1)."),
                seed_input(),
                *schedule_inputs("Steps of the SMC that will use these particles (with scheduler and denoise it "
                                 "fixes the starting sigma); use the same values on the Ψ SMC Sampler."),
                io.Combo.Input("method", options=list(INITIAL_METHODS), default=PCNL,
                               tooltip="pcnl: Ψ-Sampler (preconditioned Crank–Nicolson Langevin); mala, ula: "
                                       "Langevin baselines; prior: plain N(0, I) noise (TDS/DAS-style SMC); topk: "
                                       "best K of N prior draws (forward passes only)."),
                io.Int.Input("particles", default=4, min=1, max=4096,
                             tooltip="Number K of particles handed to the SMC."),
                io.Int.Input("chains", default=4, min=1, max=4096,
                             tooltip="MCMC chains run together as one batch; the K particles are spread over them."),
                io.Int.Input("burn_in", default=10, min=0, max=100000,
                             tooltip="MCMC iterations discarded before particles are kept."),
                io.Int.Input("mcmc_steps", default=20, min=1, max=100000,
                             tooltip="MCMC iterations per chain, burn-in included (one gradient evaluation per "
                                     "chain each)."),
                io.Float.Input("step_size", default=0.5, min=0.0001, max=10.0, step=0.01, round=False,
                               tooltip="MCMC step size δ (pCNL: below 4, 0.5 works well; MALA/ULA need ~0.05)."),
                io.Float.Input("alpha_mcmc", default=0.1, min=1e-4, max=1e4, step=0.001, round=False,
                               tooltip="Temperature α_mcmc of the reward tilt the chains target (smaller = "
                                       "stronger)."),
                grad_batch_input(),
                io.Float.Input("grad_clip", default=0.0, min=0.0, max=1e6, step=0.1,
                               tooltip="Clip each chain's gradient to this root-mean-square (0 = off)."),
                io.Boolean.Input("adapt_step_size", default=True,
                                 tooltip="Tune the step size during burn-in towards 60% acceptance, starting from "
                                         "step_size (with burn_in 0: throughout, with a diminishing gain; on by "
                                         "default: a fixed δ can stop the chains moving under a strong reward). The "
                                         "acceptance, final δ and distinct particles are shown on the node."),
                io.Int.Input("topk_candidates", default=0, min=0, max=100000,
                             tooltip="topk only: number N of prior draws to choose from (0 = 4·K)."),
                io.Sigmas.Input("sigmas", optional=True,
                                tooltip="Optional schedule (e.g. from BasicScheduler) to take the starting sigma "
                                        "from instead of steps/scheduler/denoise; use the same SIGMAS downstream."),
                lookahead_decoder_input(),
                memory_input(),
            ],
            outputs=[
                io.Latent.Output("latent", display_name="particles",
                                 tooltip="The K particles as a batch (carrying the Ψ state) for the Ψ SMC Sampler."),
                io.Noise.Output("noise", display_name="noise",
                                tooltip="The particles' starting noise for SamplerCustomAdvanced."),
                PsiTrace.Output("trace", display_name="trace",
                                tooltip="What the MCMC did (acceptance, rewards, step sizes) for the visualizer."),
            ],
        )

    @classmethod
    def validate_inputs(cls, **values):
        def check():
            initial_config(*(values[name] for name in INITIAL_OPTION_NAMES))
            check_gradient_options(values["grad_batch_size"], values.get("lookahead_decoder"), values.get("memory"))

        return validate(cls, values, check, needs=INITIAL_OPTION_NAMES + ("grad_batch_size",))

    @classmethod
    def execute(cls, model, positive, negative, cfg, vae, reward, latent_image, seed, steps, scheduler, denoise,
                method, particles, chains, burn_in, mcmc_steps, step_size, alpha_mcmc, grad_batch_size,
                grad_clip, adapt_step_size, topk_candidates, sigmas=None, lookahead_decoder="vae",
                memory=memory_modes.DEFAULT_MODE) -> io.NodeOutput:
        check_execution_inputs(cls, locals())
        config = initial_config(method, particles, chains, burn_in, mcmc_steps, step_size, alpha_mcmc, grad_clip,
                                adapt_step_size, topk_candidates)
        integer_at_least("grad_batch_size", grad_batch_size, 1)
        samples = prepare_latent(model, latent_image)
        if samples.shape[0] != 1:
            raise HostInputError(
                f"the Ψ initial sampler draws K particles for one latent image; got a batch of {samples.shape[0]} "
                "(use batch size 1 and set particles instead)")
        check_vae(vae, model)
        taesd.check_for_model(lookahead_decoder, model)
        check_memory_mode(memory, model.get_model_object("diffusion_model"), vae)
        check_reward(reward, method in MCMC_KERNELS, f"the {method} initial method")
        if sigmas is None:
            sigmas = schedule(model, scheduler, steps, denoise)
        if sigmas.numel() < 2:
            raise HostInputError("the schedule has no steps (sigmas needs at least 2 entries)")

        generator = stage_generator(seed, "initial")
        outcome = RunOutcome()
        guider = cfg_guider(model, positive, negative, cfg)
        noise = torch.zeros_like(samples)  # one state for ComfyUI's loop; the MCMC draws its own
        sample_with(guider, noise, samples, sigmas,
                                initial_function(config, grad_batch_size, vae, reward, generator, outcome,
                                                 lookahead_decoder, memory), seed)
        found = outcome.particles
        out = {k: v for k, v in latent_image.items() if k not in ("samples", "batch_index", "noise_mask", PSI_KEY)}
        out["samples"] = samples.repeat(found.num_particles, *([1] * (samples.ndim - 1))).to(
            intermediate_device())
        out[PSI_KEY] = found
        return io.NodeOutput(out, PsiNoise(found, seed), found.trace)
