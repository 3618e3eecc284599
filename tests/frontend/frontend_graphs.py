"""API-format prompts for the frontend and visualizer tests (plain dicts), built with the host
tests' graph helpers: tiny random-weight SD1.5-like model, the weight-free colour reward.
"""

from __future__ import annotations

import host_graphs
from host_graphs import Graph

FAMILY = "sd15"


def _base(g: Graph, width: int, height: int) -> dict:
    b = host_graphs.base(g, FAMILY, 0, "color")
    b["latent"] = g.link(g.add("EmptyLatentImage", width=width, height=height, batch_size=1))
    return b


def live_run(particles: int = 4, steps: int = 4, seed: int = 1) -> tuple[dict, dict]:
    """Initial sampler (pCNL, 3 MCMC iterations) → SMC sampler → visualizer on 32×32 images; ids of
    the two samplers."""
    g = Graph()
    b = _base(g, 32, 32)
    common = {"model": b["model"], "positive": b["positive"], "negative": b["negative"],
              "cfg": host_graphs.CFG[FAMILY], "vae": b["vae"], "reward": b["reward"], "seed": seed, "steps": steps,
              "scheduler": "simple", "denoise": 1.0}
    initial = g.add("PsiInitialSampler", latent_image=b["latent"], **common,
                    **{**host_graphs.INITIAL, "particles": particles})
    smc = g.add("PsiSMCSampler", latent_image=g.link(initial, 0), particles=particles, **common, **host_graphs.SMC)
    g.add("PsiParticleVisualizer", smc_trace=g.link(smc, 1), initial_trace=g.link(initial, 2), vae=b["vae"],
          model=b["model"], preview=True, rows=4, tile_width=0, save_trace=False, filename_prefix="psi/live")
    return g.nodes, {"initial": initial, "smc": smc}


def visualizer_run(particles: int, width: int, height: int, steps: int, rows: int, preview: bool,
                   save_trace: bool = False, seed: int = 0, connect_model: bool = True) -> tuple[dict, dict]:
    """Prior-initialised gradient-free SMC keeping every step's predicted latents in its trace →
    visualizer (+ the trace as JSON; its model input left empty unless `connect_model`); ids of the
    visualizer, the trace summary and the sampler."""
    g = Graph()
    b = _base(g, width, height)
    smc = g.add("PsiSMCSampler", model=b["model"], seed=seed, steps=steps, scheduler="simple", denoise=1.0,
                positive=b["positive"], negative=b["negative"], cfg=host_graphs.CFG[FAMILY], latent_image=b["latent"],
                vae=b["vae"], reward=b["reward"], particles=particles, trace_steps=steps,
                **{**host_graphs.SMC, "gradient_free": True, "grad_batch_size": 32})
    model = {"model": b["model"]} if connect_model else {}
    visualizer = g.add("PsiParticleVisualizer", smc_trace=g.link(smc, 1), vae=b["vae"], **model,
                       preview=preview, rows=rows, tile_width=0, save_trace=save_trace,
                       filename_prefix="psi/psi_trace")
    summary = g.add("PsiTestTraceSummary", trace=g.link(smc, 1), label="smc")
    return g.nodes, {"visualizer": visualizer, "summary": summary, "smc": smc}


def initial_only_run(seed: int = 0) -> tuple[dict, dict]:
    """Initial sampler → visualizer with only its trace; id of the visualizer."""
    g = Graph()
    b = _base(g, 32, 32)
    initial = g.add("PsiInitialSampler", model=b["model"], positive=b["positive"], negative=b["negative"],
                    cfg=host_graphs.CFG[FAMILY], vae=b["vae"], reward=b["reward"], latent_image=b["latent"],
                    seed=seed, steps=4, scheduler="simple", denoise=1.0, **host_graphs.INITIAL)
    visualizer = g.add("PsiParticleVisualizer", initial_trace=g.link(initial, 2), preview=True, rows=4,
                       tile_width=0, save_trace=False, filename_prefix="psi/initial")
    return g.nodes, {"visualizer": visualizer}
