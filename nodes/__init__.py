"""ComfyUI nodes of psi-sampler (V3 schema): thin adapters over `psi_core`.

The node modules declare schemas (ComfyUI's `comfy_api`) and turn inputs into core
configs; everything else they need of ComfyUI (models, VAE, memory, sampling loop,
model folders, progress and events, latent formats) they get through the pack's host
package, `comfy_host`, the only importer of ComfyUI's internals.
"""

from comfy_api.latest import ComfyExtension, io

from .initial_sampler import PsiInitialSampler
from .reward_image_stats import PsiImageStatsReward
from .reward_loaders import NODES as REWARD_NODES
from .scorer import PsiScoreImages
from .smc_sampler import PsiSMCSampler
from .smc_sampler_custom import PsiSMCSamplerCustom
from .visualizer_node import PsiParticleVisualizer

NODES = [PsiInitialSampler, PsiSMCSampler, PsiSMCSamplerCustom, PsiImageStatsReward, PsiParticleVisualizer,
         *REWARD_NODES, PsiScoreImages]


class PsiExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


__all__ = ["NODES", "PsiExtension"]
