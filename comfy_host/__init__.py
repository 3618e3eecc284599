"""The pack's one boundary with ComfyUI's internals.

Every import of ComfyUI other than its node schema (`comfy_api`) lives in this package:
the node modules (`nodes/`) declare schemas and call it, and the pure parts (`psi_core`,
`rewards`, `visualizer`) import nothing of ComfyUI (tests/core/test_boundary.py checks
both). Modules, one job each:

* compat: ComfyUI's version, the tested range, `host_symbol` (a symbol looked up when a
  node runs, or a HostCompatibilityError naming it);
* checks: node inputs that cannot work with the model, VAE or reward (HostInputError);
* sampling: schedules, the CFG guider, running a sampler function in ComfyUI's loop;
* sampler_bridge: the look-ahead reward r̂(x, σ) and its gradient inside that loop
  (Yoon et al., arXiv 2506.01320: the reward of the Tweedie estimate x̂0);
* gradients: ComfyUI's weights made usable by autograd, and its training switch;
* checkpointing, memory_modes: the `memory` option's gradient checkpointing of repeated
  blocks (denoiser and VAE decoder) during gradient passes, and out-of-memory advice;
* kitchen_autograd: backward formulas owned by the pack for comfy-kitchen's kernels (RoPE, fused
  RMSNorm + RoPE, AdaLN), and the survey of which kitchen ops have one;
* gradient_support: refusing a model whose ops have no backward, naming the op;
* latent_tensors: latent-format tensors made usable by autograd;
* saved_activations: backward through models that update saved activations in place;
* dynamic_vram: the classic model a gradient pass runs through under dynamic VRAM;
* memory: devices, loading with an estimate, placing a reward's weights;
* folders: ComfyUI's model and output folders;
* events: `psi.*` events and node text through ComfyUI's PromptServer;
* progress: interrupt checks, progress bars with latent previews;
* latent_formats: ComfyUI's latent formats by class name;
* taesd: ComfyUI's Tiny AutoEncoder as a cheaper look-ahead decoder (option lookahead_decoder);
* input_gradients: frozen Conv2d/ReLU layers whose backward keeps no float activations (TAESD's);
* clip_vision: ComfyUI's CLIP_VISION model as a differentiable image embedder;
* t2icount: T2ICount's SD1.5 UNet features, VAE encoder and text on ComfyUI's classes.

Nothing here is imported by the package itself: importing `comfy_host` imports no ComfyUI.
"""
