"""ComfyUI nodes of psi-sampler (V3 schema): thin adapters over `psi_core`.

Only `host_bridge` touches ComfyUI's model, VAE and memory internals; the node
modules declare schemas and turn inputs into core configs.
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
