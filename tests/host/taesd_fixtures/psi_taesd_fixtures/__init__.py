"""Test-only ComfyUI pack for the TAESD look-ahead host tests (never shipped).

Nodes:
  PsiTestTaesdCheck    inside ComfyUI's loop, the bridge with the TAESD look-ahead decoder: its gradient
                       against finite differences, its images against ComfyUI's own TAESD previewer, its
                       reward against the VAE's, and the refusal messages for formats without a decoder
  PsiTestExactReward   reward((VAE decode + 1)/2) of every latent of a LATENT, unclamped, as the SMC's
                       final weights define it
"""

from __future__ import annotations

import collections
import sys
from types import SimpleNamespace

import torch

from comfy_api.latest import ComfyExtension, io

PsiReward = io.Custom("PSI_REWARD")
CATEGORY = "testing/psi"


def pack_module(suffix: str):
    """The loaded module whose name ends with `suffix` (ComfyUI names pack modules after their path)."""
    for name, module in list(sys.modules.items()):
        if name.endswith(suffix) and module is not None:
            return module
    raise RuntimeError(f"no loaded module *{suffix}")


def _bridge_module():
    return pack_module("comfy_host.sampler_bridge")


def _sampling_module():
    return pack_module("comfy_host.sampling")


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.flatten().norm().clamp_min(1e-30)


def _refusal(taesd, latent_format) -> str:
    try:
        taesd.taesd_file(latent_format)
    except ValueError as err:
        return str(err)
    return ""


class _Direct:
    """A look-ahead-like view of r̂(x0) = reward(TAESD(x0)) at σ = 0, in the function's own dtype
    (the core's Lookahead returns float32 rewards, too coarse for float64 differences)."""

    def __init__(self, function):
        self.function = function

    def __call__(self, x0: torch.Tensor, sigma: float, need_grad: bool = False):
        with torch.inference_mode(False), torch.no_grad():
            return SimpleNamespace(reward=self.function(x0).reshape(-1))


def _gradient(function, x0: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode(False), torch.enable_grad():
        x_in = x0.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(function(x_in).sum(), x_in)
    return grad


class ReluPattern:
    """The on/off pattern of every ReLU in `module`, recorded on one forward pass and imposed on later ones.

    r̂ is piecewise smooth: where a ReLU's input lies within float32 round-off of 0, float32 and float64
    forwards can take different pieces, and their gradients differ by the jump between pieces, not by
    round-off. Imposing the float32 pattern on the float64 pass gives the float64 gradient of the same
    piece, so the comparison measures float32 arithmetic alone; the number of units whose sign differs
    between the two passes is reported beside it."""

    def __init__(self, module: torch.nn.Module):
        self.relus = [m for m in module.modules() if "ReLU" in type(m).__name__]
        self.recorded: dict[int, list[torch.Tensor]] = {}
        self.flips = 0

    def _record(self, relu, inputs, output):
        self.recorded.setdefault(id(relu), []).append(inputs[0].detach() > 0)

    def _impose(self, relu, inputs, output):
        mask = self.recorded[id(relu)][self.calls[id(relu)]]
        self.calls[id(relu)] += 1
        self.flips += int(((inputs[0].detach() > 0) ^ mask).sum())
        return inputs[0] * mask.to(inputs[0].dtype)

    def _with_hooks(self, hook, run):
        handles = [relu.register_forward_hook(hook) for relu in self.relus]
        try:
            return run()
        finally:
            for handle in handles:
                handle.remove()

    def record(self, run) -> None:
        self.recorded.clear()
        self._with_hooks(self._record, run)

    def imposed(self, run):
        self.calls, self.flips = collections.Counter(), 0
        result = self._with_hooks(self._impose, run)
        assert self.calls == collections.Counter({key: len(masks) for key, masks in self.recorded.items()})
        return result


def check_function(vae, reward, seed: int, rel_step: float, report: dict):
    """A sampler function that fills `report` and returns x.

    TAESD's ReLU blocks make r̂ piecewise smooth, so float32 finite differences at the
    steps the VAE check uses straddle kinks; the derivative of r̂(x0) = reward((TAESD.decode(x0)
    + 1)/2) is checked in float64 at σ = 0 with a step small enough to cross almost none, and
    the look-ahead's own float32 gradient there is compared with the float64 gradient of the same
    piece (`ReluPattern`)."""
    bridges, taesd = _bridge_module(), pack_module("comfy_host.taesd")
    gradcheck = pack_module("psi_test_fixtures.gradcheck")

    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        import comfy.latent_formats
        import comfy.taesd.taesd

        generator = torch.Generator().manual_seed(seed)
        with bridges.SamplerBridge(model, extra_args, vae, reward, grad_batch_size=2) as bridge:
            latent_format = bridge.base.latent_format
            bridge.lookahead_decoder = taesd.lookahead_decoder("taesd", latent_format, bridge.device)
            bridge.prepare((2, *x.shape[1:]))
            look = bridge.lookahead()
            eps = torch.randn((1, *x.shape[1:]), generator=generator).to(x)
            state = bridge.start(sigmas[1:])(eps)
            evaluation = look(state, float(sigmas[1]), need_grad=True)  # through the model and TAESD
            x0_hat = evaluation.x0_hat
            at_zero = look(x0_hat, 0.0, need_grad=True)  # TAESD and the reward only, float32
            report["latent_format"] = type(latent_format).__name__
            report["decoder_file"] = bridge.lookahead_decoder.path
            report["approximate"] = look.approximate
            report["gradient_norm"] = float(evaluation.grad.norm())
            module = bridge.lookahead_decoder.module
            pattern = ReluPattern(module)
            with torch.inference_mode(False), torch.no_grad():
                pattern.record(lambda: module.decode(x0_hat.detach().float()))
            with torch.inference_mode(False):
                module.double()
                reward.to(bridge.device, torch.float64)
            def in_float64(x0):  # the look-ahead's function, reward((TAESD.decode + 1)/2), without float32 casts
                return reward((module.decode(x0) + 1.0) / 2.0)

            try:
                x64 = x0_hat.detach().double()
                grad64 = _gradient(in_float64, x64)
                grad64_same_piece = pattern.imposed(lambda: _gradient(in_float64, x64))
                report["relu_flips_float32_vs_float64"] = pattern.flips
                step = rel_step * float(x64.flatten().norm())
                direct = _Direct(in_float64)
                random_v = _unit(torch.randn(x64.shape, generator=generator, dtype=torch.float64))
                report["gradient_direction"] = gradcheck._directional(direct, x64, 0.0, grad64, _unit(grad64), step)
                report["random_direction"] = gradcheck._directional(direct, x64, 0.0, grad64, random_v, step)
            finally:
                with torch.inference_mode(False):
                    module.float()
                    reward.to(bridge.device, torch.float32)
            report["float32_vs_float64"] = float((at_zero.grad.double() - grad64_same_piece).abs().max()
                                                 / grad64_same_piece.abs().max().clamp_min(1e-30))
            report["layers"] = dict(collections.Counter(type(m).__name__ for m in module.taesd_decoder.modules()))
            report["taesd_reward"] = float(evaluation.reward[0])
            report["exact_reward"] = float(look.exact_reward(x0_hat)[0])
            report["vae_reward"] = float(bridge.latent_reward(x0_hat)[0])
            # ComfyUI's own TAESD previewer: TAESD(None, decoder) on the model-space x̂0
            with torch.inference_mode(False):  # weights autograd can save (the executor runs under inference mode)
                preview = comfy.taesd.taesd.TAESD(None, bridge.lookahead_decoder.path,
                                                  latent_channels=latent_format.latent_channels)
            with torch.inference_mode(False), torch.no_grad():
                expected = (preview.decode(x0_hat.float().cpu()) + 1.0) / 2.0
                ours = bridge.lookahead_decoder(x0_hat).float().cpu()
            report["vs_comfy_previewer"] = float((ours - expected).abs().max())
            # the pack's frozen-weight layers against torch's autograd through the previewer's TAESD
            autograd = _gradient(lambda x0: reward((preview.decode(x0) + 1.0) / 2.0), x0_hat.detach().float().cpu())
            report["vs_torch_autograd"] = float((at_zero.grad.float().cpu() - autograd).abs().max()
                                                / autograd.abs().max().clamp_min(1e-30))
            report["image_shape"] = list(ours.shape)
            report["image_spread"] = float(ours.std())
        report["refusals"] = {name: _refusal(taesd, getattr(comfy.latent_formats, name)())
                              for name in ("SDXL", "SD3", "SDXL_Playground_2_5")}
        return x

    return sample


class PsiTestTaesdCheck(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PsiTestTaesdCheck", display_name="Ψ test: TAESD look-ahead check", category=CATEGORY,
            description="The TAESD look-ahead inside ComfyUI's loop (tests only).",
            inputs=[io.Model.Input("model", tooltip="MODEL"), io.Conditioning.Input("positive", tooltip="positive"),
                    io.Conditioning.Input("negative", tooltip="negative"),
                    io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, tooltip="cfg"),
                    io.Vae.Input("vae", tooltip="VAE"), PsiReward.Input("reward", tooltip="reward"),
                    io.Float.Input("rel_step", default=3e-3, min=1e-6, max=1.0, step=1e-4, round=False,
                                   tooltip="finite-difference step relative to |x|"),
                    io.Int.Input("seed", default=0, min=0, max=2**31, tooltip="seed")],
            outputs=[], is_output_node=True)

    @classmethod
    def execute(cls, model, positive, negative, cfg, vae, reward, rel_step, seed):
        sampling = _sampling_module()
        report: dict = {}
        latent = torch.zeros((1, vae.latent_channels, 8, 8))
        sigmas = sampling.schedule(model, "simple", 4, 1.0)
        guider = sampling.cfg_guider(model, positive, negative, cfg)
        sampling.sample_with(guider, torch.zeros_like(latent), latent, sigmas,
                             check_function(vae, reward, seed, rel_step, report), seed)
        return io.NodeOutput(ui={"psi_taesd": [report]})


class PsiTestExactReward(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PsiTestExactReward", display_name="Ψ test: exact reward of latents", category=CATEGORY,
            description="reward((VAE decode + 1)/2) per latent, unclamped (tests only).",
            inputs=[io.Latent.Input("latent", tooltip="LATENT (VAE space)"), io.Vae.Input("vae", tooltip="VAE"),
                    PsiReward.Input("reward", tooltip="reward")],
            outputs=[], is_output_node=True)

    @classmethod
    def execute(cls, latent, vae, reward):
        with torch.no_grad():
            samples = latent["samples"].to(device=vae.device, dtype=vae.vae_dtype)
            images = (vae.first_stage_model.decode(samples).float() + 1.0) / 2.0
            scores = reward(images.to(reward.device if hasattr(reward, "device") else "cpu")).reshape(-1)
        return io.NodeOutput(ui={"psi_exact_reward": [[float(v) for v in scores]]})


NODES = [PsiTestTaesdCheck, PsiTestExactReward]


class TaesdFixtureExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODES)


async def comfy_entrypoint():
    return TaesdFixtureExtension()
