"""Every model family a user runs, through the pack on a real ComfyUI server.

Each family is a tiny random-weight model built from its own comfy.supported_models class
(fixture_pack/psi_test_fixtures/tiny.py): SD1.5 (EPS), SDXL (EPS, pooled ADM vector), SD3.5-style
MMDiT (flow), FLUX.1-dev (guidance embedding), FLUX.1-schnell, Chroma, Lumina 2, Z-Image (hosts with
supported_models.ZImage), Qwen-Image (5-D Wan 2.1 latents [B, 16, 1, H, W]) and ERNIE-Image (hosts with
supported_models.ErnieImage; 128-channel FLUX.2-format latents, its split-half RoPE a comfy-kitchen op even
under ComfyUI's training switch, so its gradient rests on the pack's backward for that op). Per family and host:

- the bridge's reward gradient against central finite differences at two σ of the schedule, along
  the gradient and along a random direction (the tolerances of test_host.py; along the random
  direction relative to at least the typical size ‖∇‖/√d of a random unit direction's derivative,
  see `host_graphs.random_direction_error`), with the in-place
  handling chosen by the bridge's one mechanism (FLUX-block models clone saved activations from the
  first pass; no family needs its pass repeated);
- Ψ initial sampler (pCNL) → Ψ SMC sampler → VAE Decode → Save Image through the real executor (the
  distilled FLUX.1-schnell and Z-Image with the lcm kernel), twice in one prompt with the same seed:
  bitwise-identical latents; the trace records the family's latent format;
- the visualizer decodes and previews latents of the family's format as ComfyUI does, and ComfyUI's
  own progress previewer takes the latents as the samplers hand them (one probe).

A model with an op that has no backward is refused at its first gradient pass, naming the model class
and the op; gradient-free SMC with Top-K initial particles still runs it.
"""

from __future__ import annotations

import pytest

import host_graphs as graphs
from host_probe import FIXTURE_PACK, REPO, run_probe
from host_results import assert_success, error_message, outputs_of, ui_items

FAMILIES = ("sd15", "sdxl", "sd3", "flux", "flux_schnell", "chroma", "lumina2", "zimage", "qwen_image", "ernie")
#: the distilled few-step families, sampled with the lcm kernel as their workflows run them
LCM_FAMILIES = {"flux_schnell", "zimage"}
#: families whose diffusion model is built from the bridge's INPLACE_BLOCKS (FLUX's residual blocks)
CLONING_FAMILIES = {"flux", "flux_schnell", "chroma"}
LATENT_FORMAT = {"sd15": "SD15", "sdxl": "SDXL", "sd3": "SD3", "flux": "Flux", "flux_schnell": "Flux",
                 "chroma": "Flux", "lumina2": "Flux", "zimage": "Flux", "qwen_image": "Wan21",
                 "ernie": "Flux2"}
#: formats whose RGB preview factors act on channels unpatchified 2×2 (FLUX.2's 128 = 32 × 2 × 2)
PATCHIFIED_PREVIEW = {"ernie"}
FRAMES = {"qwen_image": [1]}  # 3-D latent formats: one frame
FD_REL_STEP = 3e-3

#: the visualizer's decode is ComfyUI's computation on the same inputs (float32 round-off at most)
SAME = 1e-5
#: ComfyUI's previews are 8-bit images (values truncated to multiples of 1/255)
UINT8_STEP = 1.0 / 255.0


def latent_shape(family: str, batch: int) -> list[int]:
    return [batch, graphs.CHANNELS[family], *FRAMES.get(family, []), 8, 8]


@pytest.fixture(scope="module")
def host_families(comfy) -> list[str]:
    """The fixture families this host has (their supported_models class exists)."""
    spec = comfy.get("/object_info")["PsiTestTinyModel"]["input"]["required"]["family"]
    return list(spec[1]["options"] if isinstance(spec[0], str) else spec[0])


def need_family(host_families: list[str], family: str) -> None:
    if family not in host_families:
        pytest.skip(f"this ComfyUI has no comfy.supported_models class for {family}")


def gradient_check(server, family: str) -> tuple[dict, int]:
    """The PsiTestGradCheck report of `family` on `server`, printed, and the latents' dimension."""
    prompt, ids = graphs.gradcheck(family, rel_step=FD_REL_STEP)
    entry = server.run(prompt, timeout=600.0)
    assert_success(entry, server)
    report = outputs_of(entry, ids["check"], "psi_gradcheck")[0]
    dimension = graphs.latent_dimension(family)
    kitchen = (f" (comfy-kitchen {report['kitchen_version']}, kernels called with grad "
               f"{report['kitchen_grad_calls']})") if report.get("ungated_modules") else ""
    print(f"\n{family} gradient check{kitchen}: " + "; ".join(
        f"σ={c['sigma']:.4g}: grad-dir {c['gradient_direction']['rel_error']:.2e}, "
        f"random-dir {c['random_direction']['rel_error']:.2e} ({graphs.random_direction_error(c, dimension):.2e} "
        "of max(|⟨∇,v⟩|, ‖∇‖/√d))" for c in report["checks"]))
    return report, dimension


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_matches_finite_differences(comfy, host_families, family):
    need_family(host_families, family)
    report, dimension = gradient_check(comfy, family)
    assert not gradient_failures(report, family, dimension), gradient_failures(report, family, dimension)


def gradient_failures(report: dict, family: str, dimension: int) -> list[str]:
    """What in a PsiTestGradCheck report of `family` (latents of `dimension` numbers) is not as it must be."""
    cloning = family in CLONING_FAMILIES
    expectations = {
        "family kind": report["family"] == ("eps" if family in ("sd15", "sdxl") else "flow"),
        "inference weights converted": report["inference_weights_before"] > 0
        and report["inference_weights_after"] == 0,
        "activation cloning": report["clone_saved_at_start"] == cloning and report["clone_saved"] == cloning,
        # every family's in-place updates are known before its first pass
        "not retried": not report["retried"],
        "two σ, descending": len(report["checks"]) == 2
        and report["checks"][0]["sigma"] > report["checks"][1]["sigma"] > 0,
    }
    failures = [f"{what}: {report}" for what, ok in expectations.items() if not ok]
    for check in report["checks"]:
        if not (check["gradient_direction"]["rel_error"] < graphs.GRADIENT_DIRECTION_RTOL
                and graphs.random_direction_error(check, dimension) < graphs.RANDOM_DIRECTION_RTOL
                and check["batch_vs_single"] < 1e-4):
            failures.append(f"tolerance: {check}")
    return failures


def twin_runs(family: str, seed: int, **smc_overrides) -> tuple[dict, dict]:
    """Two identical initial → SMC chains (same seed) on one tiny model, each with its digests and traces."""
    g = graphs.Graph()
    b = graphs.base(g, family, 0, "tiny_net")
    ids = {}
    for run in ("a", "b"):
        initial = graphs.initial_node(g, family, b, seed)
        smc = graphs.smc_node(g, family, b, g.link(initial, 0), seed, **smc_overrides)
        g.add("PsiTestLatentDigest", latent=g.link(smc, 0), label=f"smc_{run}")
        g.add("PsiTestLatentDigest", latent=g.link(initial, 0), label=f"initial_{run}")
        g.add("PsiTestTraceSummary", trace=g.link(smc, 1), label=f"smc_{run}")
        ids[run] = smc
    decode = g.add("VAEDecode", samples=g.link(ids["a"], 0), vae=b["vae"])
    ids["save"] = g.add("SaveImage", images=g.link(decode), filename_prefix=f"psi_test_family_{family}")
    return g.nodes, ids


@pytest.mark.parametrize("family", FAMILIES)
def test_initial_then_smc_graph_same_seed_same_bits(comfy, host_families, family):
    need_family(host_families, family)
    kernel = "lcm" if family in LCM_FAMILIES else "ancestral"
    prompt, ids = twin_runs(family, seed=5, kernel=kernel)
    entry = comfy.run(prompt, timeout=600.0)
    assert_success(entry, comfy)
    assert len(outputs_of(entry, ids["save"], "images")) == 1
    digests, traces = ui_items(entry, "psi_digest"), ui_items(entry, "psi_trace")
    assert digests["smc_a"]["shape"] == latent_shape(family, 1) and digests["smc_a"]["finite"]
    assert digests["initial_a"]["shape"] == latent_shape(family, graphs.PARTICLES)
    assert digests["smc_a"]["sha256"] == digests["smc_b"]["sha256"]  # same seed, same bits
    assert digests["initial_a"]["sha256"] == digests["initial_b"]["sha256"]
    assert digests["smc_a"]["std"] > 0.0
    trace = traces["smc_a"]
    assert trace["latent_format"] == LATENT_FORMAT[family]
    assert len(trace["smc"]) == graphs.SMC_STEPS and trace["nfe"]["nfe_grad"] > 0
    print(f"\n{family} graph ({kernel}): smc latent {digests['smc_a']['shape']} sha256 "
          f"{digests['smc_a']['sha256'][:12]} (twice), mean {digests['smc_a']['mean']:.4g}, "
          f"ESS {[round(r['ess'], 2) for r in trace['smc']]}")


@pytest.fixture(scope="module")
def formats() -> dict:
    return run_probe("family_format_probe.py", str(REPO), str(FIXTURE_PACK))


@pytest.mark.parametrize("family", FAMILIES)
def test_visualizer_decodes_and_previews_with_the_family_latent_format(formats, host_families, family):
    need_family(host_families, family)
    figures = formats[family]
    assert figures["format"] == LATENT_FORMAT[family] and figures["chosen"] == figures["format"], figures
    assert figures["latent_shape"] == [2, graphs.CHANNELS[family], *FRAMES.get(family, []), 4, 4]
    preview_side = 8 if family in PATCHIFIED_PREVIEW else 4
    assert figures["decoded_shape"] == [2, 32, 32, 3]
    assert figures["preview_shape"] == [2, preview_side, preview_side, 3]
    assert figures["decode_vs_comfyui"] <= SAME, figures
    assert figures["preview_vs_factors"] <= SAME, figures
    assert figures["comfyui_preview_vs_ours"] <= UINT8_STEP + SAME, figures


def test_model_with_an_op_without_backward_is_refused_and_gradient_free_still_runs(comfy):
    prompt, ids = graphs.initial_smc("no_backward", seed=2)
    driven = comfy.drive(prompt)
    entry = comfy.history(driven["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    message = error_message(entry)
    assert "NoBackwardUNet" in message and "psi_test.no_backward_scale" in message, message
    assert "gradient_free" in message and "topk" in message, message
    # refused by the initial sampler at its first gradient pass: not one MCMC iteration ran
    failed = [data.get("node_id") for kind, data in entry["status"]["messages"] if kind == "execution_error"]
    assert failed == [ids["initial"]]
    assert not [e for e in driven["events"] if e["type"] == "psi.mcmc_step"]

    g = graphs.Graph()
    b = graphs.base(g, "no_backward", 0, "tiny_net")
    initial = graphs.initial_node(g, "no_backward", b, 2, method="topk", topk_candidates=6)
    smc = graphs.smc_node(g, "no_backward", b, g.link(initial, 0), 2, gradient_free=True, guidance=0.0)
    g.add("PsiTestLatentDigest", latent=g.link(smc, 0), label="gradient_free")
    g.add("PsiTestTraceSummary", trace=g.link(smc, 1), label="gradient_free")
    entry = comfy.run(g.nodes)
    assert_success(entry, comfy)
    digest = ui_items(entry, "psi_digest")["gradient_free"]
    assert digest["shape"] == latent_shape("no_backward", 1) and digest["finite"]
    assert ui_items(entry, "psi_trace")["gradient_free"]["nfe"]["nfe_grad"] == 0


def test_kernel_option_reaches_the_smc_of_both_nodes(comfy):
    """lcm ignores eta (its step re-noises the prediction), ancestral does not: with the same seed, lcm at
    eta 1 and 0.5 give the same bits and ancestral another result, on the Ψ SMC Sampler and on its SAMPLER
    twin under SamplerCustomAdvanced (prior particles, FLUX.1-schnell-like model)."""
    family = "flux_schnell"
    g = graphs.Graph()
    b = graphs.base(g, family, 0, "tiny_net")
    variants = {"ancestral": ("ancestral", 1.0), "lcm": ("lcm", 1.0), "lcm_eta": ("lcm", 0.5)}
    for label, (kernel, eta) in variants.items():
        smc = graphs.smc_node(g, family, b, b["latent"], 7, kernel=kernel, eta=eta)
        g.add("PsiTestLatentDigest", latent=g.link(smc, 0), label=f"node_{label}")
        guider = g.add("BasicGuider", model=b["model"], conditioning=b["positive"])
        sampler = g.add("PsiSMCSamplerCustom", vae=b["vae"], reward=b["reward"],
                        **{**graphs.SMC, "kernel": kernel, "eta": eta})
        sigmas = g.add("BasicScheduler", model=b["model"], scheduler="simple", steps=graphs.SMC_STEPS, denoise=1.0)
        latent = g.add("EmptyLatentImage", width=64, height=64, batch_size=graphs.PARTICLES)
        advanced = g.add("SamplerCustomAdvanced", noise=g.link(g.add("RandomNoise", noise_seed=7)),
                         guider=g.link(guider), sampler=g.link(sampler), sigmas=g.link(sigmas),
                         latent_image=g.link(latent))
        g.add("PsiTestLatentDigest", latent=g.link(advanced, 0), label=f"custom_{label}")
    entry = comfy.run(g.nodes)
    assert_success(entry, comfy)
    digests = {label: item["sha256"] for label, item in ui_items(entry, "psi_digest").items()}
    for node in ("node", "custom"):
        assert digests[f"{node}_lcm"] == digests[f"{node}_lcm_eta"], node
        assert digests[f"{node}_lcm"] != digests[f"{node}_ancestral"], node


def test_a_latent_of_several_frames_is_refused_before_sampling(comfy, host_families):
    """Qwen-Image takes 3-D latents; the reward scores one image per particle, so a latent of two frames
    is refused with its shape named, before the initial sampler draws anything."""
    need_family(host_families, "qwen_image")
    prompt, ids = graphs.initial_smc("qwen_image", seed=2)
    video = str(max(int(k) for k in prompt) + 1)
    prompt[video] = {"class_type": "EmptyHunyuanLatentVideo",
                     "inputs": {"width": 64, "height": 64, "length": 5, "batch_size": 1}}  # 2 latent frames
    prompt[ids["initial"]]["inputs"]["latent_image"] = [video, 0]
    driven = comfy.drive(prompt)
    entry = comfy.history(driven["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    assert "holds 2 frames, shape (1, 16, 2, 8, 8)" in error_message(entry), error_message(entry)
    assert not [e for e in driven["events"] if e["type"] == "psi.mcmc_step"]
