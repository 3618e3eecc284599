"""PsiSMCSampler: reward-aligned SMC as a KSampler replacement.

Given the Ψ initial sampler's LATENT it continues from those K particles with
consistent weights (and their cached look-ahead); given a plain latent it runs
prior-initialised SMC with `particles` particles.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..comfy_host import memory_modes, taesd
from ..comfy_host.checks import (HostInputError, check_memory_mode, check_reward, check_run_memory, check_vae,
                                 family_of, prepare_latent, run_memory_limit)
from ..comfy_host.progress import sampler_callback
from ..comfy_host.sampling import cfg_guider, sample_with, schedule
from ..psi_core.rng import randn
from ..psi_core.validation import integer_at_least
from .declared import check_execution_inputs, validate
from .options import (check_gradient_options, conditioning_inputs, kernel_input, lookahead_decoder_input, memory_input,
                      reward_inputs, schedule_inputs, seed_input, smc_config, smc_control_inputs, smc_inputs,
                      SMC_OPTION_NAMES, smc_option_values, trace_steps_input)
from .particles import PSI_KEY, PsiParticles, stage_generator
from .runs import RunOutcome, smc_function
from .types import PsiTrace


def particle_count(samples_batch: int, particles: int, carried: PsiParticles | None) -> int:
    """K: the carried Ψ particles' count, else `particles` (the latent batch must be 1 or K)."""
    if carried is not None:
        if samples_batch != carried.num_particles:
            raise HostInputError(
                f"the latent carries {carried.num_particles} Ψ particles but its batch is {samples_batch}: connect "
                "the Ψ initial sampler's LATENT directly")
        return carried.num_particles
    if samples_batch not in (1, particles):
        raise HostInputError(
            f"the latent has a batch of {samples_batch} but particles is {particles}: use a latent of batch 1 "
            "(repeated for every particle) or of batch equal to particles")
    return particles


class PsiSMCSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PsiSMCSampler",
            display_name="Ψ SMC Sampler",
            category="sampling/psi",
            description=(
                "KSampler replacement that samples p(x)·exp(r(x)/α) with K particles: reward-guided proposals, "
                "importance weights and resampling. Continues from the Ψ Initial Sampler's particles, or starts "
                "from noise on a plain latent."),
            inputs=[
                conditioning_inputs()[0],
                seed_input(),
                *schedule_inputs("The number of SMC steps (one look-ahead evaluation per particle per step)."),
                *conditioning_inputs()[1:],
                io.Latent.Input("latent_image",
                                tooltip="The Ψ Initial Sampler's particles, or a plain latent (batch 1 or "
                                        "particles) to start from noise; with denoise < 1 it is the image kept."),
                *reward_inputs(),
                io.Int.Input("particles", default=4, min=1, max=4096,
                             tooltip="Number K of particles on a plain latent; ignored when the latent carries Ψ "
                                     "particles (their count is used)."),
                *smc_inputs(),
                trace_steps_input(),
                *smc_control_inputs(),
                kernel_input(),
                lookahead_decoder_input(),
                memory_input(),
            ],
            outputs=[
                io.Latent.Output("latent", display_name="latent",
                                 tooltip="The output latent(s): one for best/sample, K for all."),
                PsiTrace.Output("trace", display_name="trace",
                                tooltip="What the run did (ESS, weights, ancestors, rewards, NFE) for the visualizer."),
            ],
        )

    @classmethod
    def validate_inputs(cls, **values):
        options = smc_option_values(values)

        def check():
            smc_config(*options)
            check_gradient_options(values["grad_batch_size"], values.get("lookahead_decoder"), values.get("memory"))

        return validate(cls, values, check, needs=SMC_OPTION_NAMES + ("grad_batch_size",))

    @classmethod
    def execute(cls, model, seed, steps, scheduler, denoise, positive, negative, cfg, latent_image, vae, reward,
                particles, alpha, ess_threshold, resampling, eta, guidance, gradient_free, grad_batch_size,
                output, trace_steps=6, tempering=True, tempering_ess=0.99, guidance_clip=1.0,
                kernel="ancestral", lookahead_decoder="vae",
                memory=memory_modes.DEFAULT_MODE) -> io.NodeOutput:
        check_execution_inputs(cls, locals())
        config = smc_config(alpha, ess_threshold, resampling, eta, guidance, gradient_free, output, tempering,
                            tempering_ess, guidance_clip, kernel)
        integer_at_least("grad_batch_size", grad_batch_size, 1)
        samples = prepare_latent(model, latent_image)
        check_vae(vae, model)
        taesd.check_for_model(lookahead_decoder, model)
        check_memory_mode(memory, model.get_model_object("diffusion_model"), vae)
        check_reward(reward, config.guided, "guided SMC (guidance > 0)")
        carried = latent_image.get(PSI_KEY)
        k = particle_count(samples.shape[0], particles, carried)
        check_run_memory(k, tuple(samples.shape[1:]), min(trace_steps, steps), grad_batch_size, run_memory_limit())
        sigmas = schedule(model, scheduler, steps, denoise)
        if carried is not None:
            carried.check_compatible(family_of(model), float(sigmas[0]), tuple(samples.shape[1:]))

        generator = stage_generator(seed, "smc")
        noise = carried.eps.clone() if carried is not None else randn((k, *samples.shape[1:]), generator)
        latent = samples.expand(k, *samples.shape[1:]).contiguous() if samples.shape[0] == 1 else samples
        outcome = RunOutcome()
        function = smc_function(config, grad_batch_size, vae, reward, outcome, carried, generator, trace_steps,
                                lookahead_decoder, memory)
        guider = cfg_guider(model, positive, negative, cfg)
        callback = sampler_callback(model, steps)
        result = sample_with(guider, noise.to(latent.dtype), latent, sigmas, function, seed, callback)
        dropped = ("samples", "batch_index", "noise_mask", PSI_KEY)
        out = {key: v for key, v in latent_image.items() if key not in dropped}
        out["samples"] = result
        return io.NodeOutput(out, outcome.result.trace)
