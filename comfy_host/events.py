"""Live `psi.*` events and node text through ComfyUI's PromptServer.

Events go to the client that queued the prompt (`PromptServer.instance.send_sync`):

    psi.mcmc_step  {node, prompt_id, iteration, total, burn_in, step_size, acceptance,
                    reward_mean, reward_max, nfe}
    psi.smc_step   {node, prompt_id, step, total, sigma, sigma_next, ess, ess_before,
                    resampled, num_particles, reward_mean, reward_max, weights, nfe,
                    lambda (tempering λ of the target after the step), clipped (fraction of
                    particles whose guided shift was capped)}

`node` is the executing node's id (the SamplerCustomAdvanced node for the SAMPLER).
Outside a server (PromptServer.instance is None) events are skipped.
"""

from __future__ import annotations

import functools

try:  # the executing node and prompt, where this ComfyUI provides them
    from comfy_execution.utils import get_executing_context
except ImportError:  # pragma: no cover - older hosts
    def get_executing_context():
        return None


@functools.lru_cache(maxsize=1)
def _prompt_server_class():
    """ComfyUI's PromptServer class, or None outside a host that has one (looked up
    once: a failing import costs ~10 ms and would repeat on every event)."""
    try:
        from server import PromptServer
    except ImportError:
        return None
    return PromptServer


def _server():
    server_class = _prompt_server_class()
    return None if server_class is None else getattr(server_class, "instance", None)


def _context() -> tuple[str | None, str | None]:
    context = get_executing_context()
    if context is None:
        return None, None
    return context.node_id, context.prompt_id


def send_event(event: str, data: dict) -> None:
    """Send `event` with `data`, the executing node and the prompt to the prompt's client."""
    server = _server()
    if server is None:
        return
    node, prompt = _context()
    server.send_sync(event, {"node": node, "prompt_id": prompt, **data}, getattr(server, "client_id", None))


def show_text(text: str) -> None:
    """Show `text` under the executing node (ComfyUI's progress text), where the host can."""
    server = _server()
    node, _ = _context()
    if server is None or node is None or not hasattr(server, "send_progress_text"):
        return
    server.send_progress_text(text, node, getattr(server, "client_id", None))
