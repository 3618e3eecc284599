"""psi-sampler against a real ComfyUI server (see conftest.py for the host).

Covers: registration and tooltips; the bridge's reward gradient against finite
differences inside the real executor (EPS, V-prediction, and flow: FLUX-like and
Lumina 2-like, whose RoPE and q/k-norm+RoPE 0.33 runs through comfy-kitchen ops), also through
the non-dynamic delegates that dynamic VRAM calls for (a CPU stand-in); initial sampler → SMC
sampler → VAE Decode → Save Image; SamplerCustomAdvanced with the Ψ NOISE and
the Ψ SAMPLER; bad inputs refused with clear messages; /interrupt within one
step, a failing run, and the next prompt matching a fresh host; same seed →
bitwise-identical latents.
"""

from __future__ import annotations

import pytest

import host_graphs as graphs
from host_results import assert_success, error_message, outputs_of, ui_items

PSI_NODES = ("PsiInitialSampler", "PsiSMCSampler", "PsiSMCSamplerCustom", "PsiImageStatsReward")
FAMILIES = ("sd15", "flux")
# central-difference step relative to |x|: the random-weight V-prediction UNet curves more
# along its gradient at σ ≈ 1.6, where 3e-3 leaves a 4e-3 truncation error (1e-3 gives 4e-5)
FD_REL_STEP = {"sd15v": 1e-3}
GRADIENT_DIRECTION_RTOL = graphs.GRADIENT_DIRECTION_RTOL
RANDOM_DIRECTION_RTOL = graphs.RANDOM_DIRECTION_RTOL


def cached_nodes(entry: dict) -> set:
    for kind, data in entry["status"].get("messages", []):
        if kind == "execution_cached":
            return set(data.get("nodes", []))
    return set()


def drive_to_saved_image(server, prompt: dict, save_id: str) -> tuple[dict, dict]:
    """Run through the websocket driver; check success and one saved image; (driver JSON, history entry)."""
    driven = server.drive(prompt)
    assert driven["node_errors"] == {} and driven["finished"], driven
    entry = server.history(driven["prompt_id"])
    assert_success(entry, server)
    assert len(outputs_of(entry, save_id, "images")) == 1
    return driven, entry


def events(driven: dict, kind: str) -> list[dict]:
    return [e["data"] for e in driven["events"] if e["type"] == kind]


def test_nodes_registered_with_tooltips(comfy):
    info = comfy.get("/object_info")
    for node_id in PSI_NODES:
        node = info[node_id]
        assert node["category"] == "sampling/psi" and node["description"], node_id
        for section in ("required", "optional"):
            for name, spec in node["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert all(node["output_tooltips"]), f"{node_id} has an output without a tooltip"
    assert info["PsiInitialSampler"]["output"] == ["LATENT", "NOISE", "PSI_TRACE"]
    assert info["PsiSMCSampler"]["output"] == ["LATENT", "PSI_TRACE"]
    assert info["PsiSMCSamplerCustom"]["output"] == ["SAMPLER"]


@pytest.mark.parametrize("family", (*FAMILIES, "sd15v", "lumina2"))
def test_gradient_matches_finite_differences(comfy, family):
    prompt, ids = graphs.gradcheck(family, rel_step=FD_REL_STEP.get(family, 3e-3))
    entry = comfy.run(prompt)
    assert_success(entry, comfy)
    report = outputs_of(entry, ids["check"], "psi_gradcheck")[0]
    print_figures(family, report, family)
    assert report["family"] == {"sd15": "eps", "sd15v": "eps", "flux": "flow", "lumina2": "flow"}[family]
    assert report["inference_weights_before"] > 0  # the executor really made inference tensors
    assert report["inference_weights_after"] == 0
    assert report["gradient_models_are_delegates"] == [False, False]  # classic patchers: their own models
    if family == "flux":
        # FLUX's blocks are known to update saved activations in place: cloning is on from the
        # first gradient pass, so no pass is repeated
        assert report["clone_saved_at_start"] and report["clone_saved"] and not report["retried"]
    else:
        assert not report["clone_saved"] and not report["retried"]
    _assert_gradient_checks(report, family)


def print_figures(label: str, report: dict, family: str) -> None:
    dimension = graphs.latent_dimension(family)
    print(f"\n{label} gradient check: " + "; ".join(
        f"σ={c['sigma']:.4g}: grad-dir {c['gradient_direction']['rel_error']:.2e}, "
        f"random-dir {c['random_direction']['rel_error']:.2e} "
        f"({graphs.random_direction_error(c, dimension):.2e} of max(|⟨∇,v⟩|, ‖∇‖/√d))" for c in report["checks"]))


def _assert_gradient_checks(report: dict, family: str) -> None:
    """Along the random direction relative to at least ‖∇‖/√d (`host_graphs.random_direction_error`)."""
    dimension = graphs.latent_dimension(family)
    for check in report["checks"]:
        assert check["gradient_direction"]["rel_error"] < GRADIENT_DIRECTION_RTOL, check
        assert graphs.random_direction_error(check, dimension) < RANDOM_DIRECTION_RTOL, check
        assert check["batch_vs_single"] < 1e-4, check


@pytest.mark.parametrize("family", ("sd15", "flux"))
def test_dynamic_vram_gradients_run_through_non_dynamic_delegates(comfy, family):
    """A MODEL and VAE whose patchers stand in for dynamic-VRAM ones (on a CPU no real
    one can exist; see the fixture's dynamic_standin.py): every gradient pass runs through
    the delegates, none through the dynamic models, whose weights stay untouched (no
    conversion, so no copy of the whole model); the gradient still matches finite differences."""
    prompt, ids = graphs.gradcheck(family, rel_step=FD_REL_STEP.get(family, 3e-3))
    tiny_model = next(node for node in prompt.values() if node["class_type"] == "PsiTestTinyModel")
    tiny_model["inputs"]["dynamic_standin"] = True
    entry = comfy.run(prompt)
    assert_success(entry, comfy)
    report = outputs_of(entry, ids["check"], "psi_gradcheck")[0]
    print_figures(f"{family} (dynamic stand-in, delegates)", report, family)
    assert report["gradient_models_are_delegates"] == [True, True]
    counts = report["standin_counts"]
    assert counts.get("model_delegates_made") == 1 and counts.get("vae_delegates_made") == 1, counts
    assert counts.get("model_delegate", 0) > 0 and counts.get("vae_delegate", 0) > 0, counts
    assert counts.get("model_standin", 0) == 0 and counts.get("vae_standin", 0) == 0, counts
    before = report["model_vae_inference_weights_before"]
    assert before > 0 and report["model_vae_inference_weights_after"] == before
    assert report["gradient_models_inference_weights"] == 0
    _assert_gradient_checks(report, family)


def test_unknown_inplace_model_is_detected_and_its_pass_repeated(comfy):
    """A model the bridge does not know to update activations in place (simulated by starting
    FLUX without cloning): the first gradient pass fails inside autograd, is repeated with
    cloning, and the gradient still matches finite differences."""
    prompt, ids = graphs.gradcheck("flux", rel_step=FD_REL_STEP.get("flux", 3e-3), forget_inplace=True)
    entry = comfy.run(prompt)
    assert_success(entry, comfy)
    report = outputs_of(entry, ids["check"], "psi_gradcheck")[0]
    assert not report["clone_saved_at_start"] and report["retried"] and report["clone_saved"]
    _assert_gradient_checks(report, "flux")


@pytest.mark.parametrize("family", (*FAMILIES, "sd15v", "lumina2"))
def test_initial_then_smc_graph(comfy, family):
    reward = "image_stats" if family.startswith("sd15") else "tiny_net"
    prompt, ids = graphs.initial_smc(family, seed=1, reward=reward)
    driven, entry = drive_to_saved_image(comfy, prompt, ids["save"])
    digests = ui_items(entry, "psi_digest")
    channels = graphs.CHANNELS[family]
    assert digests["smc"]["shape"] == [1, channels, 8, 8] and digests["smc"]["finite"]
    assert digests["initial"]["shape"] == [graphs.PARTICLES, channels, 8, 8]
    assert "psi_particles" in digests["initial"]["keys"] and "psi_particles" not in digests["smc"]["keys"]
    traces = ui_items(entry, "psi_trace")
    assert traces["initial"]["method"] == "pcnl" and len(traces["initial"]["mcmc"]) == graphs.INITIAL["mcmc_steps"]
    smc_trace = traces["smc"]
    assert len(smc_trace["smc"]) == graphs.SMC_STEPS and len(smc_trace["selected"]) == 1
    assert smc_trace["recorded_steps"] == list(range(graphs.SMC_STEPS)) and smc_trace["initial_x0"]  # trace_steps 6
    # the initial look-ahead is reused: K per step for the SMC_STEPS-1 stochastic steps, none at the start
    assert smc_trace["nfe"]["nfe"] == graphs.PARTICLES * (graphs.SMC_STEPS - 1)
    mcmc_events, smc_events = events(driven, "psi.mcmc_step"), events(driven, "psi.smc_step")
    assert [e["iteration"] for e in mcmc_events] == list(range(1, graphs.INITIAL["mcmc_steps"] + 1))
    assert all(e["node"] == ids["initial"] for e in mcmc_events)
    assert [e["step"] for e in smc_events] == list(range(1, graphs.SMC_STEPS + 1))
    assert all(e["node"] == ids["smc"] and 1.0 <= e["ess"] <= graphs.PARTICLES + 1e-6 for e in smc_events)
    assert smc_events[0]["reward_max"] is not None and len(smc_events[0]["weights"]) == graphs.PARTICLES
    assert any(e["type"] == "progress" and e["data"].get("node") == ids["smc"] for e in driven["events"])


@pytest.mark.parametrize("family", FAMILIES)
def test_sampler_custom_advanced_with_psi_noise(comfy, family):
    prompt, ids = graphs.custom_advanced(family, psi_noise=True)
    driven, entry = drive_to_saved_image(comfy, prompt, ids["save"])
    digests = ui_items(entry, "psi_digest")
    assert digests["custom"]["shape"] == [1, graphs.CHANNELS[family], 8, 8] and digests["custom"]["finite"]
    assert digests["denoised"]["sha256"] == digests["custom"]["sha256"]
    smc_events = events(driven, "psi.smc_step")
    assert len(smc_events) == graphs.SMC_STEPS and all(e["node"] == ids["advanced"] for e in smc_events)
    # the Ψ particles' look-ahead was reused (no evaluation at the start)
    assert smc_events[-1]["nfe"]["nfe"] == graphs.PARTICLES * (graphs.SMC_STEPS - 1)


def test_sampler_custom_advanced_prior_particles(comfy):
    prompt, ids = graphs.custom_advanced("flux", psi_noise=False)
    entry = comfy.run(prompt)
    assert_success(entry, comfy)
    assert ui_items(entry, "psi_digest")["custom"]["shape"] == [1, 16, 8, 8]


def test_img2img_with_denoise_below_one(comfy):
    prompt, ids = graphs.img2img("sd15", denoise=0.5)
    entry = comfy.run(prompt)
    assert_success(entry, comfy)
    digests = ui_items(entry, "psi_digest")
    assert digests["img2img"]["shape"] == [1, 4, 8, 8] and digests["img2img"]["finite"]
    assert digests["img2img_prior"]["shape"] == [graphs.PARTICLES, 4, 8, 8]
    trace = ui_items(entry, "psi_trace")["img2img"]
    sigma0 = trace["smc"][0]["sigma"]
    assert 0.0 < sigma0 < 14.0  # starts part-way down the schedule (sigma_max is 14.6)
    assert trace["nfe"]["nfe"] == graphs.PARTICLES * (graphs.SMC_STEPS - 1)  # initial look-ahead reused

    prompt, _ = graphs.img2img("sd15", denoise=0.5, smc_denoise=0.6)
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "error"
    assert "use the same scheduler, steps and denoise" in error_message(entry)


def test_gradient_free_smc_with_a_reward_without_gradient(comfy):
    prompt, _ = graphs.gradient_free("flux")
    entry = comfy.run(prompt)
    assert_success(entry, comfy)
    assert ui_items(entry, "psi_digest")["gradient_free"]["shape"] == [graphs.PARTICLES, 16, 8, 8]
    nfe = ui_items(entry, "psi_trace")["gradient_free"]["nfe"]
    assert nfe["nfe_grad"] == 0 and nfe["nfe_forward"] == graphs.PARTICLES * graphs.SMC_STEPS


def add_node(prompt: dict, class_type: str, **inputs) -> str:
    node_id = str(max(int(k) for k in prompt) + 1)
    prompt[node_id] = {"class_type": class_type, "inputs": inputs}
    return node_id


def test_bad_inputs_are_refused(comfy):
    # range checks in validate_inputs: refused by /prompt with node_errors
    prompt, ids = graphs.initial_smc("sd15")
    prompt[ids["smc"]]["inputs"]["alpha"] = 0.0
    prompt[ids["initial"]]["inputs"]["burn_in"] = 5
    status, reply = comfy.queue(prompt)
    assert status == 400, reply
    text = str(reply["node_errors"])
    assert "alpha must be" in text and "burn_in must be smaller" in text

    def failure(prompt: dict) -> str:
        entry = comfy.run(prompt)
        assert entry["status"]["status_str"] == "error"
        return error_message(entry)

    prompt, _ = graphs.initial_smc("sd15", reward="threshold")
    message = failure(prompt)
    assert "has no gradient" in message and "gradient_free" in message

    prompt, ids = graphs.initial_smc("sd15")  # an inpainting mask
    mask = add_node(prompt, "SolidMask", value=1.0, width=64, height=64)
    masked = add_node(prompt, "SetLatentNoiseMask", samples=prompt[ids["initial"]]["inputs"]["latent_image"],
                      mask=[mask, 0])
    prompt[ids["initial"]]["inputs"]["latent_image"] = [masked, 0]
    assert "inpainting masks are not supported" in failure(prompt)

    prompt, ids = graphs.initial_smc("flux")  # the VAE of another model
    sd15 = add_node(prompt, "PsiTestTinyModel", family="sd15", seed=0)
    prompt[ids["initial"]]["inputs"]["vae"] = [sd15, 1]
    assert "the VAE decodes 4-channel latents" in failure(prompt)

    prompt, ids = graphs.initial_smc("flux")  # a non-empty 4-channel latent into a 16-channel model
    sd15 = add_node(prompt, "PsiTestTinyModel", family="sd15", seed=0)
    image = add_node(prompt, "EmptyImage", width=64, height=64, batch_size=1, color=0x808080)
    encoded = add_node(prompt, "VAEEncode", pixels=[image, 0], vae=[sd15, 1])
    prompt[ids["initial"]]["inputs"]["latent_image"] = [encoded, 0]
    assert "the latent has 4 channels" in failure(prompt)

    prompt, ids = graphs.custom_advanced("flux", psi_noise=True)  # other noise than the Ψ particles'
    random_noise = add_node(prompt, "RandomNoise", noise_seed=0)
    prompt[ids["advanced"]]["inputs"]["noise"] = [random_noise, 0]
    assert "the starting states are not the Ψ particles" in failure(prompt)

    prompt, ids = graphs.initial_smc("sd15")  # particle count vs a plain latent's batch
    batch = add_node(prompt, "EmptyLatentImage", width=64, height=64, batch_size=2)
    prompt[ids["smc"]]["inputs"]["latent_image"] = [batch, 0]
    assert "batch of 2 but particles is 3" in failure(prompt)


def test_failure_and_interrupt_leave_the_host_usable(comfy):
    """A fresh model's result; then a run failing mid-way and an interrupted run on
    the same cached model; then the first prompt again gives the same latent."""
    prompt, ids = graphs.initial_smc("sd15", seed=5, model_seed=11)
    fresh = comfy.run(prompt)
    assert_success(fresh, comfy)
    reference = ui_items(fresh, "psi_digest")["smc"]["sha256"]

    failing, _ = graphs.initial_smc("sd15", seed=5, model_seed=11, smc_reward="fail")
    entry = comfy.run(failing)
    assert entry["status"]["status_str"] == "error"
    assert "fixture reward failure" in error_message(entry)

    long_run, long_ids = graphs.initial_smc("sd15", seed=6, model_seed=11, mcmc_steps=400, burn_in=10)
    driven = comfy.drive(long_run, interrupt_after="psi.mcmc_step:2")
    assert driven["finished"] and driven["interrupt_sent_at"] is not None, driven
    after = driven["events"][driven["interrupt_sent_at"] + 1:]
    assert any(e["type"] == "execution_interrupted" for e in after), after
    assert sum(e["type"] == "psi.mcmc_step" for e in after) <= 1  # stops within one step

    again = comfy.run(prompt)
    assert_success(again, comfy)
    assert ids["model"] in cached_nodes(again)  # the same cached MODEL ...
    assert ids["initial"] not in cached_nodes(again) and ids["smc"] not in cached_nodes(again)
    assert ui_items(again, "psi_digest")["smc"]["sha256"] == reference  # ... gives the fresh host's result


def test_same_seed_gives_bitwise_identical_latents(comfy):
    digests = []
    for run, seed in enumerate((21, 22, 21)):
        prompt, ids = graphs.initial_smc("flux", seed=seed, model_seed=3)
        entry = comfy.run(prompt)
        assert_success(entry, comfy)
        assert ids["smc"] not in cached_nodes(entry)
        assert (ids["model"] in cached_nodes(entry)) == (run > 0)  # prompts in a row on the same cached MODEL
        digests.append(ui_items(entry, "psi_digest")["smc"]["sha256"])
    assert digests[0] == digests[2] and digests[0] != digests[1]
