"""Test rewards following the PSI_REWARD contract (duck-typed, test-only).

color     weight-free, smooth: −mean((image − c)²) for a fixed colour c
tiny_net  a random-weight conv net (its weights are inference tensors when built in
          a node, so the bridge must convert them)
threshold no gradient: 1 where the mean pixel exceeds 0.5, else 0
fail      like color, but raises from its third call on (a run failing mid-way)
oom       like color, but raises torch.OutOfMemoryError in every gradient call (an
          out-of-memory error inside a gradient pass)
"""

from __future__ import annotations

import torch

KINDS = ("color", "tiny_net", "threshold", "fail", "oom")
FAIL_AT_CALL = 3


class TinyNet(torch.nn.Module):
    """[B, 3, H, W] -> [B]: two strided convs, SiLU, global mean, linear."""

    def __init__(self, generator: torch.Generator):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.head = torch.nn.Linear(8, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.silu(self.conv1(images))
        h = torch.nn.functional.silu(self.conv2(h))
        return self.head(h.mean(dim=(2, 3))).reshape(-1)


class FixtureReward:
    """images [B, 3, H, W] float32 in [0, 1] -> [B] float32."""

    def __init__(self, kind: str, seed: int = 0):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
        self.name = f"fixture_{kind}"
        self.kind = kind
        self.differentiable = kind != "threshold"
        self.net = TinyNet(torch.Generator().manual_seed(int(seed))) if kind == "tiny_net" else None
        self.calls = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.kind == "fail" and self.calls >= FAIL_AT_CALL:
            raise RuntimeError("fixture reward failure (expected by the test)")
        if self.kind == "oom" and images.requires_grad:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (fixture)")
        if self.kind in ("color", "fail", "oom"):
            target = torch.tensor([0.8, 0.3, 0.2], device=images.device).view(1, 3, 1, 1)
            return -(images - target).square().flatten(1).mean(dim=1)
        if self.kind == "tiny_net":
            return self.net(images)
        return (images.flatten(1).mean(dim=1) > 0.5).float()

    def modules(self) -> list[torch.nn.Module]:
        return [] if self.net is None else [self.net]

    def to(self, device, dtype=None) -> "FixtureReward":
        for module in self.modules():
            module.to(device=device, dtype=dtype)
        return self

    @property
    def device(self) -> torch.device:
        return torch.device("cpu") if self.net is None else next(self.net.parameters()).device

    def memory_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for m in self.modules() for p in m.parameters())
