"""API-format prompts for the host tests (plain dicts; no ComfyUI imports).

Tiny settings keep every run to seconds on a CPU: 64×64 images (8×8 latents),
3 particles, 2 chains, 3 MCMC iterations, 4 SMC steps.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

CHANNELS = {"sd15": 4, "sd15v": 4, "sdxl": 4, "sd3": 16, "flux": 16, "flux_schnell": 16, "chroma": 16,
            "lumina2": 16, "zimage": 16, "qwen_image": 16, "ernie": 128, "no_backward": 4}
# cfg 1 (no negative pass) for the guidance-distilled models, as their workflows run them
CFG = {"sd15": 2.0, "sd15v": 2.0, "sdxl": 2.0, "sd3": 2.0, "flux": 1.0, "flux_schnell": 1.0, "chroma": 2.0,
       "lumina2": 2.0, "zimage": 1.0, "qwen_image": 2.0, "ernie": 2.0, "no_backward": 2.0}

# finite-difference tolerances of the gradient checks (float32 models; central difference + one Richardson step)
GRADIENT_DIRECTION_RTOL = 1e-3
RANDOM_DIRECTION_RTOL = 1e-2


def latent_dimension(family: str) -> int:
    """Coordinates of one particle's latent in the gradient checks (64 × 64 images: 8 × 8 latents, one frame)."""
    return CHANNELS[family] * 64


def random_direction_error(check: dict, dimension: int) -> float:
    """|finite difference − ⟨∇, v⟩| along the random unit direction v, relative to the larger of the two and
    of ‖∇‖/√d, the typical |⟨∇, v⟩| of a random unit v in d dimensions. A draw nearly orthogonal to ∇ (far
    below ‖∇‖/√d) leaves a derivative near float32 round-off of r̂ over the step: relative to itself alone
    its error says nothing about the gradient (Qwen-Image at σ = 1: ⟨∇, v⟩ = 2.6e-3·‖∇‖, error 1.5e-6)."""
    fd, analytic = check["random_direction"]["finite_difference"], check["random_direction"]["analytic"]
    norm = check["gradient_direction"]["analytic"]  # ⟨∇, ∇/‖∇‖⟩ = ‖∇‖
    return abs(fd - analytic) / max(abs(fd), abs(analytic), norm / dimension ** 0.5)
SMC_STEPS = 4
PARTICLES = 3

INITIAL = {"method": "pcnl", "particles": PARTICLES, "chains": 2, "burn_in": 1, "mcmc_steps": 3, "step_size": 0.5,
           "alpha_mcmc": 0.1, "grad_batch_size": 2, "grad_clip": 0.0, "adapt_step_size": False,
           "topk_candidates": 0}
SMC = {"alpha": 0.1, "ess_threshold": 0.5, "resampling": "systematic", "eta": 1.0, "guidance": 1.0,
       "gradient_free": False, "grad_batch_size": 2, "output": "best"}


class Graph:
    """Builds an API-format prompt: `add` returns the node id; `link(id, slot)`."""

    def __init__(self):
        self.nodes: dict[str, dict] = {}

    def add(self, class_type: str, **inputs) -> str:
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id

    @staticmethod
    def link(node_id: str, slot: int = 0) -> list:
        return [node_id, slot]


def base(g: Graph, family: str, model_seed: int, reward: str) -> dict:
    """Tiny model + reward + empty latent; returns the links by name."""
    model = g.add("PsiTestTinyModel", family=family, seed=model_seed)
    if reward == "image_stats":
        reward_id = g.add("PsiImageStatsReward", statistic="brightness", goal="maximize", target=0.5, color="#d04020")
    else:
        reward_id = g.add("PsiTestReward", kind=reward, seed=0)
    latent = g.add("EmptyLatentImage", width=64, height=64, batch_size=1)
    return {"model": g.link(model, 0), "vae": g.link(model, 1), "positive": g.link(model, 2),
            "negative": g.link(model, 3), "reward": g.link(reward_id), "latent": g.link(latent), "model_id": model}


def initial_node(g: Graph, family: str, b: dict, seed: int, **overrides) -> str:
    options = {**INITIAL, **overrides}
    return g.add("PsiInitialSampler", model=b["model"], positive=b["positive"], negative=b["negative"],
                 cfg=CFG[family], vae=b["vae"], reward=b["reward"], latent_image=b["latent"], seed=seed,
                 steps=SMC_STEPS, scheduler="simple", denoise=1.0, **options)


def smc_node(g: Graph, family: str, b: dict, latent: list, seed: int, particles: int = PARTICLES,
             denoise: float = 1.0, **overrides) -> str:
    options = {**SMC, **overrides}
    return g.add("PsiSMCSampler", model=b["model"], seed=seed, steps=SMC_STEPS, scheduler="simple", denoise=denoise,
                 positive=b["positive"], negative=b["negative"], cfg=CFG[family], latent_image=latent,
                 vae=b["vae"], reward=b["reward"], particles=particles, **options)


def initial_smc(family: str, seed: int = 1, model_seed: int = 0, reward: str = "tiny_net",
                smc_reward: str | None = None, **initial_overrides) -> tuple[dict, dict]:
    """TinyModel → PsiInitialSampler → PsiSMCSampler → VAEDecode → SaveImage (+ digests, traces)."""
    g = Graph()
    b = base(g, family, model_seed, reward)
    initial = initial_node(g, family, b, seed, **initial_overrides)
    if smc_reward is not None:
        b = {**b, "reward": g.link(g.add("PsiTestReward", kind=smc_reward, seed=0))}
    smc = smc_node(g, family, b, g.link(initial, 0), seed)
    decode = g.add("VAEDecode", samples=g.link(smc, 0), vae=b["vae"])
    save = g.add("SaveImage", images=g.link(decode), filename_prefix=f"psi_test_{family}")
    digest = g.add("PsiTestLatentDigest", latent=g.link(smc, 0), label="smc")
    g.add("PsiTestLatentDigest", latent=g.link(initial, 0), label="initial")
    g.add("PsiTestTraceSummary", trace=g.link(initial, 2), label="initial")
    g.add("PsiTestTraceSummary", trace=g.link(smc, 1), label="smc")
    ids = {"model": b["model_id"], "initial": initial, "smc": smc, "save": save, "digest": digest}
    return g.nodes, ids


def custom_advanced(family: str, seed: int = 3, model_seed: int = 0, psi_noise: bool = True) -> tuple[dict, dict]:
    """SamplerCustomAdvanced with the Ψ NOISE (or RandomNoise on a batch of K) and the Ψ SAMPLER."""
    g = Graph()
    b = base(g, family, model_seed, "tiny_net")
    if family == "sd15":
        guider = g.add("CFGGuider", model=b["model"], positive=b["positive"], negative=b["negative"], cfg=CFG[family])
    else:
        guider = g.add("BasicGuider", model=b["model"], conditioning=b["positive"])
    sampler_inputs = {"vae": b["vae"], "reward": b["reward"], **SMC}
    if psi_noise:
        initial = initial_node(g, family, b, seed)
        noise, latent = g.link(initial, 1), b["latent"]  # batch-1 latent: the Ψ NOISE gives the K particles
        sampler_inputs["initial_noise"] = noise
    else:
        noise = g.link(g.add("RandomNoise", noise_seed=seed))
        latent = g.link(g.add("EmptyLatentImage", width=64, height=64, batch_size=PARTICLES))
    sampler = g.add("PsiSMCSamplerCustom", **sampler_inputs)
    sigmas = g.add("BasicScheduler", model=b["model"], scheduler="simple", steps=SMC_STEPS, denoise=1.0)
    advanced = g.add("SamplerCustomAdvanced", noise=noise, guider=g.link(guider), sampler=g.link(sampler),
                     sigmas=g.link(sigmas), latent_image=latent)
    decode = g.add("VAEDecode", samples=g.link(advanced, 0), vae=b["vae"])
    save = g.add("SaveImage", images=g.link(decode), filename_prefix=f"psi_test_custom_{family}")
    digest = g.add("PsiTestLatentDigest", latent=g.link(advanced, 0), label="custom")
    g.add("PsiTestLatentDigest", latent=g.link(advanced, 1), label="denoised")
    return g.nodes, {"advanced": advanced, "save": save, "digest": digest, "model": b["model_id"]}


def gradcheck(family: str, model_seed: int = 0, rel_step: float = 3e-3,
              forget_inplace: bool = False) -> tuple[dict, dict]:
    g = Graph()
    b = base(g, family, model_seed, "tiny_net")
    check = g.add("PsiTestGradCheck", model=b["model"], positive=b["positive"], negative=b["negative"],
                  cfg=CFG[family], vae=b["vae"], reward=b["reward"], steps=4, sigma_indices="0,2", rel_step=rel_step,
                  seed=0, forget_inplace=forget_inplace)
    return g.nodes, {"check": check}


def img2img(family: str, denoise: float, smc_denoise: float | None = None, seed: int = 4) -> tuple[dict, dict]:
    """An encoded image → PsiInitialSampler and PsiSMCSampler at denoise < 1."""
    g = Graph()
    b = base(g, family, 0, "tiny_net")
    image = g.add("EmptyImage", width=64, height=64, batch_size=1, color=0xC08040)
    b["latent"] = g.link(g.add("VAEEncode", pixels=g.link(image), vae=b["vae"]))
    initial = g.add("PsiInitialSampler", model=b["model"], positive=b["positive"], negative=b["negative"],
                    cfg=CFG[family], vae=b["vae"], reward=b["reward"], latent_image=b["latent"], seed=seed,
                    steps=SMC_STEPS, scheduler="simple", denoise=denoise, **INITIAL)
    smc = smc_node(g, family, b, g.link(initial, 0), seed,
                   denoise=denoise if smc_denoise is None else smc_denoise)
    plain = smc_node(g, family, b, b["latent"], seed, denoise=denoise, output="all", gradient_free=True)
    g.add("PsiTestLatentDigest", latent=g.link(smc, 0), label="img2img")
    g.add("PsiTestLatentDigest", latent=g.link(plain, 0), label="img2img_prior")
    g.add("PsiTestLatentDigest", latent=b["latent"], label="input")
    g.add("PsiTestTraceSummary", trace=g.link(smc, 1), label="img2img")
    return g.nodes, {"initial": initial, "smc": smc, "plain": plain}


def gradient_free(family: str, seed: int = 8) -> tuple[dict, dict]:
    """Prior-initialised gradient-free SMC with a reward that has no gradient."""
    g = Graph()
    b = base(g, family, 0, "threshold")
    smc = smc_node(g, family, b, b["latent"], seed, gradient_free=True, output="all")
    g.add("PsiTestLatentDigest", latent=g.link(smc, 0), label="gradient_free")
    g.add("PsiTestTraceSummary", trace=g.link(smc, 1), label="gradient_free")
    return g.nodes, {"smc": smc}


def host_env(python_path: Path | None = None) -> dict[str, str]:
    """The environment for a script run in the host's python, with the server's PYTHONPATH."""
    return {**os.environ, "PYTHONPATH": str(python_path or "")}


def host_has(python: Path, module: str, python_path: Path | None = None) -> bool:
    """Whether `module` is importable in the host's python, with `python_path` on its PYTHONPATH
    as the server has it (checked there, not imported)."""
    code = f"import importlib.util as u; print(u.find_spec({module!r}) is not None)"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60,
                          env=host_env(python_path))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() == "True"


def host_runs_groundingdino_py(python: Path, python_path: Path | None = None) -> bool:
    """Whether the host's python has groundingdino-py and transformers < 5, the only place the
    package can build its model (checked there, not imported)."""
    code = ("import importlib.util as u, importlib.metadata as m; "
            "print(u.find_spec('groundingdino') is not None and int(m.version('transformers').split('.')[0]) < 5)")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60,
                          env=host_env(python_path))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() == "True"


def host_conftest():
    """tests/host/conftest.py as loaded by pytest (its server class and helpers): test modules
    reach it through this, since pytest loads conftest files under their own names."""
    import sys

    path = Path(__file__).resolve().parent / "conftest.py"
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve() == path:
            return module
    raise RuntimeError("tests/host/conftest.py is not loaded")
