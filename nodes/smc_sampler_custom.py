"""PsiSMCSamplerCustom: the Ψ SMC as a SAMPLER for SamplerCustomAdvanced.

Works with any GUIDER, SIGMAS and NOISE. The particles are the batch of the
latent/noise SamplerCustomAdvanced starts from; with the Ψ Initial Sampler's NOISE
connected to both SamplerCustomAdvanced and `initial_noise`, the SMC reuses the
particles' look-ahead and weights them consistently with their tilt.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..comfy_host import memory_modes
from ..comfy_host.checks import HostInputError, check_reward
from ..comfy_host.sampling import make_sampler
from ..psi_core.validation import integer_at_least
from .declared import check_execution_inputs, validate
from .noise import PsiNoise
from .options import (check_gradient_options, kernel_input, lookahead_decoder_input, memory_input, reward_inputs,
                      smc_config, smc_control_inputs, smc_inputs, SMC_OPTION_NAMES, smc_option_values,
                      trace_steps_input)
from .runs import RunOutcome, smc_function


class PsiSMCSamplerCustom(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PsiSMCSamplerCustom",
            display_name="Ψ SMC Sampler (custom)",
            category="sampling/psi",
            description=(
                "Reward-aligned SMC as a SAMPLER for SamplerCustomAdvanced (any guider, sigmas and noise). The "
                "latent's batch is the number of particles; SamplerCustomAdvanced's seed drives the SMC."),
            inputs=[
                *reward_inputs(),
                *smc_inputs(),
                io.Noise.Input("initial_noise", optional=True,
                               tooltip="The Ψ Initial Sampler's NOISE (also connected to SamplerCustomAdvanced): "
                                       "reuses its particles' look-ahead and weights them consistently. Leave "
                                       "empty for prior-initialised SMC."),
                trace_steps_input(),
                *smc_control_inputs(),
                kernel_input(),
                lookahead_decoder_input(),
                memory_input(),
            ],
            outputs=[
                io.Sampler.Output("sampler", display_name="sampler",
                                  tooltip="The Ψ SMC sampler for SamplerCustomAdvanced."),
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
    def execute(cls, vae, reward, alpha, ess_threshold, resampling, eta, guidance, gradient_free, grad_batch_size,
                output, initial_noise=None, trace_steps=6, tempering=True, tempering_ess=0.99,
                guidance_clip=1.0, kernel="ancestral", lookahead_decoder="vae",
                memory=memory_modes.DEFAULT_MODE) -> io.NodeOutput:
        check_execution_inputs(cls, locals())
        config = smc_config(alpha, ess_threshold, resampling, eta, guidance, gradient_free, output, tempering,
                            tempering_ess, guidance_clip, kernel)
        integer_at_least("grad_batch_size", grad_batch_size, 1)
        check_reward(reward, config.guided, "guided SMC (guidance > 0)")
        particles = None
        if initial_noise is not None:
            if not isinstance(initial_noise, PsiNoise):
                raise HostInputError(
                    "initial_noise must be the Ψ Initial Sampler's NOISE (leave it empty for other noise)")
            particles = initial_noise.particles
        memory_modes.check_mode(memory)
        function = smc_function(config, grad_batch_size, vae, reward, RunOutcome(), particles,
                                trace_steps=trace_steps, lookahead_decoder=lookahead_decoder, memory=memory)
        return io.NodeOutput(make_sampler(function))
