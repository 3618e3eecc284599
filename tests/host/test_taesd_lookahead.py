"""The TAESD look-ahead decoder against a real ComfyUI server (see conftest.py for the host).

Tiny random-weight TAESD decoders of the real architecture, made with ComfyUI's own
`comfy.taesd.taesd` classes (taesd_models.py, in the host's python), are saved into the
server's `vae_approx` model folder while it boots: taesd_decoder (SD1.5-like, 4 channels) and
taef1_decoder (FLUX-like, 16 channels). The tiny SD1.5-like and FLUX-like models of the
shared fixture pack use them.

Covers, for both families: Ψ initial sampler → Ψ SMC sampler (and the SAMPLER twin) with
`lookahead_decoder = taesd` run; the gradient of the TAESD look-ahead matches finite
differences (the tolerances of test_host.py's VAE check) and torch's autograd through ComfyUI's own
TAESD (the pack swaps its layers for frozen-weight ones); the decoder is ComfyUI's previewer's
TAESD on model-space latents; the final rewards in the trace are the rewards of the real VAE
decode of the output latents (and differ from the TAESD look-ahead they replaced); a model
without its decoder file is refused naming the option, the latent format and the file; with
no decoder at all the prompt is refused when it is queued.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import host_graphs as graphs
from host_probe import run_probe

HERE = Path(__file__).resolve().parent
TAESD_FIXTURE_PACK = HERE / "taesd_fixtures" / "psi_taesd_fixtures"
FAMILIES = ("sd15", "flux")
DECODER_FILE = {"sd15": "taesd_decoder.safetensors", "flux": "taef1_decoder.safetensors"}
LATENT_FORMAT = {"sd15": "SD15", "flux": "Flux"}
#: as test_host.py's check of the VAE path (central differences with one Richardson step), here in
#: float64: TAESD's ReLUs make r̂ piecewise smooth, and float32 differences at test_host.py's step
#: (3e-3 of |x|) straddled kinks (4.7% off); the error from kinks shrinks with the step
GRADIENT_DIRECTION_RTOL = 1e-3
RANDOM_DIRECTION_RTOL = 1e-2
FD_REL_STEP = 1e-6
#: the look-ahead's float32 gradient against the float64 gradient of the same function on the same piece
#: (the float32 pass's ReLU pattern imposed on the float64 one: a unit within round-off of its kink flips)
FLOAT32_RTOL = 1e-3
#: the same float32 computation twice
SAME = 1e-5
#: one float32 gradient by two backward algorithms (the pack's conv_transpose of frozen layers, autograd's
#: convolution backward): ~35 layers of 576-term sums, each a few float32 ulps (1.2e-7) relative
TWO_BACKWARDS = 1e-4
#: TAESD's image decoder: 1 + 3·10 (blocks) + 3 (after upsampling) + 1 convolutions, 1 + 3·10 ReLUs
DECODER_LAYERS = {"Conv2d": 35, "ReLU": 31}
TAESD = {"lookahead_decoder": "taesd"}

host = graphs.host_conftest()


class TaesdServer(host.ComfyServer):
    """conftest's server with a vae_approx model folder and the TAESD fixture pack."""

    extra_packs = {"psi_taesd_fixtures": TAESD_FIXTURE_PACK}
    required_nodes = (*host.ComfyServer.required_nodes, "PsiTestTaesdCheck")

    def __init__(self, root: Path, python: Path, work: Path):
        super().__init__(root, python, work)
        self.approx = work / "vae_approx"

    def model_paths(self) -> dict[str, Path]:
        return {"vae_approx": self.approx}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from host.serve(TaesdServer, tmp_path_factory, "psi_taesd_host",
                          lambda instance: run_probe("taesd_models.py", str(instance.approx)))


def _success(entry: dict, server) -> None:
    assert entry["status"]["status_str"] == "success", (entry["status"], server.log_tail())


def _ui(entry: dict, node: str, key: str):
    return entry["outputs"][node][key]


@pytest.mark.parametrize("family", FAMILIES)
def test_taesd_gradient_decode_and_rewards_inside_comfyui(server, family):
    g = graphs.Graph()
    b = graphs.base(g, family, 0, "tiny_net")
    check = g.add("PsiTestTaesdCheck", model=b["model"], positive=b["positive"], negative=b["negative"],
                  cfg=graphs.CFG[family], vae=b["vae"], reward=b["reward"], rel_step=FD_REL_STEP, seed=0)
    entry = server.run(g.nodes)
    _success(entry, server)
    report = _ui(entry, check, "psi_taesd")[0]
    print(f"\n{family} TAESD: " + json.dumps({k: report[k] for k in ("gradient_direction", "random_direction",
                                                                    "float32_vs_float64", "relu_flips_float32_vs_float64",
                                                                    "vs_torch_autograd", "taesd_reward", "vae_reward")}))
    assert report["latent_format"] == LATENT_FORMAT[family]
    assert Path(report["decoder_file"]).name == DECODER_FILE[family]
    assert report["approximate"]
    assert report["image_shape"] == [1, 3, 64, 64] and report["image_spread"] > 1e-3
    assert report["gradient_direction"]["rel_error"] < GRADIENT_DIRECTION_RTOL, report
    assert report["random_direction"]["rel_error"] < RANDOM_DIRECTION_RTOL, report
    assert report["float32_vs_float64"] < FLOAT32_RTOL, report
    assert report["gradient_norm"] > 0  # and through the model at σ > 0
    assert report["vs_comfy_previewer"] <= SAME, report
    # every layer of the pack's TAESD decoder is a frozen-weight one, with autograd's gradient
    layers = report["layers"]
    assert "ReLU" not in layers and layers["MaskReLU"] == DECODER_LAYERS["ReLU"], layers
    assert layers["FrozenConv2d"] == layers["Conv2d"] == DECODER_LAYERS["Conv2d"], layers
    assert report["vs_torch_autograd"] < TWO_BACKWARDS, report
    # the look-ahead decodes with TAESD, the exact reward with the VAE
    assert report["exact_reward"] == pytest.approx(report["vae_reward"], rel=SAME, abs=SAME)
    assert abs(report["taesd_reward"] - report["vae_reward"]) > 1e-3, report
    refusals = report["refusals"]
    assert "lookahead_decoder" in refusals["SDXL"] and "taesdxl_decoder" in refusals["SDXL"], refusals
    assert "SD3" in refusals["SD3"] and "taesd3_decoder" in refusals["SD3"], refusals
    playground = refusals["SDXL_Playground_2_5"]
    assert "SDXL_Playground_2_5" in playground and "set lookahead_decoder to vae" in playground, playground


def _taesd_run(family: str, seed: int = 5, smc_decoder: str = "taesd") -> tuple[dict, dict]:
    """Ψ initial (TAESD chains) → Ψ SMC (`smc_decoder` look-ahead, all particles) → exact reward + trace."""
    g = graphs.Graph()
    b = graphs.base(g, family, 0, "tiny_net")
    initial = graphs.initial_node(g, family, b, seed, **TAESD)
    smc = graphs.smc_node(g, family, b, g.link(initial, 0), seed, output="all", lookahead_decoder=smc_decoder)
    exact = g.add("PsiTestExactReward", latent=g.link(smc, 0), vae=b["vae"], reward=b["reward"])
    summary = g.add("PsiTestTraceSummary", trace=g.link(smc, 1), label="taesd")
    return g.nodes, {"exact": exact, "summary": summary}


@pytest.mark.parametrize("family", FAMILIES)
def test_final_weights_and_rewards_use_the_real_vae_decode_of_the_output(server, family):
    prompt, ids = _taesd_run(family)
    entry = server.run(prompt)
    _success(entry, server)
    exact = _ui(entry, ids["exact"], "psi_exact_reward")[0]
    trace = _ui(entry, ids["summary"], "psi_trace")[0]
    last = trace["smc"][-1]
    assert last["sigma_next"] == 0.0
    assert trace["selected"] == list(range(graphs.PARTICLES))
    # the final reward of every particle is the reward of the real VAE decode of the output latent ...
    assert last["reward"] == pytest.approx(exact, rel=1e-4, abs=1e-5), (last["reward"], exact)
    # ... and replaced the TAESD look-ahead r̂ of the same particles, which differs from it
    assert last["replaced_reward"] is not None
    assert max(abs(a - b) for a, b in zip(last["replaced_reward"], exact)) > 1e-3, last
    assert all(step["replaced_reward"] is None for step in trace["smc"][:-1])
    # α_mcmc = α and the SMC's first twist is the chains' own TAESD look-ahead: flat initial weights
    assert max(trace["initial_log_weights"]) == min(trace["initial_log_weights"])


def test_chains_with_taesd_and_an_smc_with_the_vae_weight_for_the_chains_tilt(server):
    # the SMC scores the particles again through the VAE; its initial weights r̂_vae/α − r̂_taesd/α_mcmc
    # are then uneven (they would be flat, and wrong, if the chains' TAESD tilt were forgotten)
    prompt, ids = _taesd_run("sd15", smc_decoder="vae")
    entry = server.run(prompt)
    _success(entry, server)
    trace = _ui(entry, ids["summary"], "psi_trace")[0]
    assert max(trace["initial_log_weights"]) - min(trace["initial_log_weights"]) > 1e-3, trace["initial_log_weights"]
    assert trace["smc"][-1]["replaced_reward"] is None  # a VAE look-ahead needs no final correction
    exact = _ui(entry, ids["exact"], "psi_exact_reward")[0]
    assert trace["smc"][-1]["reward"] == pytest.approx(exact, rel=1e-4, abs=1e-5)


def test_the_sampler_twin_runs_with_taesd(server):
    g = graphs.Graph()
    b = graphs.base(g, "sd15", 0, "tiny_net")
    guider = g.add("CFGGuider", model=b["model"], positive=b["positive"], negative=b["negative"],
                   cfg=graphs.CFG["sd15"])
    sampler = g.add("PsiSMCSamplerCustom", vae=b["vae"], reward=b["reward"], **graphs.SMC, **TAESD)
    noise = g.add("RandomNoise", noise_seed=2)
    latent = g.add("EmptyLatentImage", width=64, height=64, batch_size=graphs.PARTICLES)
    sigmas = g.add("BasicScheduler", model=b["model"], scheduler="simple", steps=graphs.SMC_STEPS, denoise=1.0)
    advanced = g.add("SamplerCustomAdvanced", noise=g.link(noise), guider=g.link(guider), sampler=g.link(sampler),
                     sigmas=g.link(sigmas), latent_image=g.link(latent))
    g.add("PsiTestLatentDigest", latent=g.link(advanced, 0), label="custom_taesd")
    _success(server.run(g.nodes), server)


def _error_message(entry: dict) -> str:
    for kind, data in entry["status"].get("messages", []):
        if kind == "execution_error":
            return f"{data.get('node_type')}: {data.get('exception_message', '')}"
    return ""


def test_a_model_without_its_decoder_file_is_refused_before_sampling(server):
    in_place = server.approx / DECODER_FILE["flux"]
    aside = server.work / DECODER_FILE["flux"]
    shutil.move(in_place, aside)
    try:
        prompt, _ = _taesd_run("flux")
        entry = server.run(prompt)
    finally:
        shutil.move(aside, in_place)
    assert entry["status"]["status_str"] == "error"
    message = _error_message(entry)
    assert message.startswith("PsiInitialSampler:"), message  # the first node to need it, before its chains run
    for part in ("lookahead_decoder", "Flux", "taef1_decoder", "vae_approx", "set lookahead_decoder to vae"):
        assert part in message, message


def _smc_alone() -> dict:
    g = graphs.Graph()
    b = graphs.base(g, "sd15", 0, "tiny_net")
    smc = graphs.smc_node(g, "sd15", b, b["latent"], 1, **TAESD)
    g.add("PsiTestTraceSummary", trace=g.link(smc, 1), label="alone")
    return g.nodes


def test_taesd_without_any_decoder_is_refused_when_the_prompt_is_queued(server):
    aside = server.work / "vae_approx_aside"
    shutil.move(server.approx, aside)
    server.approx.mkdir()
    try:
        replies = [server.queue(prompt) for prompt in (_taesd_run("sd15")[0], _smc_alone())]
    finally:
        server.approx.rmdir()
        shutil.move(aside, server.approx)
    refused_types = set()
    for status, reply in replies:
        assert status == 400, reply
        for error in reply["node_errors"].values():
            refused_types.add(error["class_type"])
            text = json.dumps(error["errors"])
            for part in ("lookahead_decoder", "taesd_decoder", "taef1_decoder", "vae_approx",
                         "set lookahead_decoder to vae"):
                assert part in text, text
    assert {"PsiInitialSampler", "PsiSMCSampler"} <= refused_types, replies
