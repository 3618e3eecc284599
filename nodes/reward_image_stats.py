"""PsiImageStatsReward: a weight-free, differentiable image-statistics reward.

A first PSI_REWARD that needs no model files (brightness, contrast, saturation,
colourfulness, sharpness or closeness to a colour, maximised, minimised or
brought to a target), from `rewards.image_stats`.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..rewards.image_stats import GOALS, STATISTIC_NAMES, ImageStatReward
from .declared import check_execution_inputs, validate
from .types import PsiReward


def build(statistic: str, goal: str, target: float, color: str) -> ImageStatReward:
    return ImageStatReward(statistic, goal, target=target if goal == "target" else None,
                           color=color if statistic == "color" else None)


class PsiImageStatsReward(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PsiImageStatsReward",
            display_name="Ψ Image Statistics Reward",
            category="sampling/psi",
            description=("A reward from a simple image statistic (no model weights, differentiable): useful to "
                         "try the Ψ samplers and to steer brightness, contrast, colour or sharpness."),
            inputs=[
                io.Combo.Input("statistic", options=list(STATISTIC_NAMES), default="brightness",
                               tooltip="brightness (mean luma), contrast (RMS), saturation, colorfulness, sharpness "
                                       "(Laplacian energy) or color (closeness to the colour below)."),
                io.Combo.Input("goal", options=list(GOALS), default="maximize",
                               tooltip="maximize or minimize the statistic, or bring it to target "
                                       "(score −|value − target|)."),
                io.Float.Input("target", default=0.5, min=-1e6, max=1e6, step=0.01,
                               tooltip="The value to reach when goal is target (brightness and saturation lie in "
                                       "[0, 1], contrast in [0, 0.5])."),
                io.String.Input("color", default="#d04020",
                                tooltip="Target colour for the color statistic, as #rrggbb."),
            ],
            outputs=[PsiReward.Output("reward", display_name="reward",
                                      tooltip="The reward, for the Ψ samplers' reward input.")],
        )

    @classmethod
    def validate_inputs(cls, **values):
        names = ("statistic", "goal", "target", "color")
        return validate(cls, values, lambda: build(*(values[n] for n in names)), needs=names)

    @classmethod
    def execute(cls, statistic, goal, target, color) -> io.NodeOutput:
        check_execution_inputs(cls, locals())
        return io.NodeOutput(build(statistic, goal, target, color))
