"""The pack's backward for each comfy-kitchen op, on the kitchen this host imports.

Run by test_kitchen_gradients.py with the host's python in the host's folder (a kitchen on PYTHONPATH
takes the place of the host's own):
    python kitchen_op_probe.py PACK_DIR
Prints one JSON line: the kitchen's version, the coverage the pack registered, and per op and case
- forward: max |kitchen op − pack reference| / max |reference| in float32 (the backward is the
  reference's vector–Jacobian product, so it is only right where the two maps agree);
- backward_vs_reference: the gradient of ⟨w, op(inputs)⟩ for a random w through the op (the pack's
  registered backward) against autograd through the reference, per differentiable input (x, freqs_cis,
  scales, shift), max relative difference;
- gradient_direction / random_direction: |⟨∇, v⟩ − central difference| through the op itself (kitchen's
  forward, the pack's backward) along v = ∇/‖∇‖ (over all its differentiable inputs together) relative
  to the larger of the two, and along a random unit v relative to at least ‖∇‖/√d, the typical size of
  ⟨∇, v⟩ (as test_families.random_direction_error); step STEP with one Richardson step. The kitchen
  takes float32 at most (float64 is refused), so these are float32 checks; the reference itself is
  checked in float64 by tests/core/test_kitchen_reference.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

from probe_setup import import_host

STEP = 1e-3


def load_kitchen_autograd(pack: str):
    path = os.path.join(pack, "comfy_host", "kitchen_autograd.py")
    spec = importlib.util.spec_from_file_location("psi_kitchen_autograd", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cases(torch, generator):
    """(op name, case label, inputs in schema order; tensors float64, used as float32)."""
    def rand(*shape):
        return torch.randn(shape, generator=generator, dtype=torch.float64)

    def freqs(*shape):  # rotation matrices [[cos, −sin], [sin, cos]] per pair, as ComfyUI builds them
        angle = rand(*shape)
        return torch.stack((angle.cos(), -angle.sin(), angle.sin(), angle.cos()), dim=-1).unflatten(-1, (2, 2))

    b, h, n, d = 2, 3, 5, 8  # [B, heads, positions, head dim] (FLUX's layout)
    yield "apply_rope", "bhnd", (rand(b, h, n, d), rand(b, h, n, d), freqs(b, 1, n, d // 2))
    yield "apply_rope1", "bhnd", (rand(b, h, n, d), freqs(b, 1, n, d // 2))
    yield "apply_rope1", "freqs trimmed", (rand(b, h, n, d), freqs(b, 1, n + 2, d // 2))
    yield "apply_rope1", "bnhd", (rand(b, n, h, d), freqs(b, n, 1, d // 2))  # Lumina's layout
    yield "apply_rope_split_half", "bnhd", (rand(b, n, h, d), rand(b, n, h, d), freqs(b, n, 1, d // 2))
    yield "apply_rope_split_half1", "bnhd", (rand(b, n, h, d), freqs(b, n, 1, d // 2))
    yield "rms_rope", "bnhd", (rand(b, n, h, d), rand(b, n, h, d), freqs(b, n, 1, d // 2), rand(d), rand(d), 1e-6)
    yield "rms_rope", "k_scale None", (rand(b, n, h, d), rand(b, n, h, d), freqs(b, n, 1, d // 2), rand(d), None,
                                       1e-6)
    yield "rms_rope1", "bnhd", (rand(b, n, h, d), freqs(b, n, 1, d // 2), rand(d), 1e-6)
    yield "rms_rope_split_half", "bnhd", (rand(b, n, h, d), rand(b, n, h, d), freqs(b, n, 1, d // 2), rand(d),
                                          rand(d), 1e-6, 0)
    yield "rms_rope_split_half", "rot_dim D/2", (rand(b, n, h, d), rand(b, n, h, d), freqs(b, n, 1, d // 4),
                                                 rand(d), rand(d), 1e-6, d // 2)
    yield "rms_rope_split_half1", "bnhd", (rand(b, n, h, d), freqs(b, n, 1, d // 2), rand(d), 1e-6)
    yield "rms_adaln", "bnd", (rand(b, n, d), rand(b, 1, d), rand(b, 1, d), 1e-6)
    yield "adaln", "bnd", (rand(b, n, d), rand(b, 1, d), rand(b, 1, d), 1e-6)


def main() -> None:
    pack = sys.argv[1]
    import_host()
    import torch

    import comfy.quant_ops  # noqa: F401  (imports comfy_kitchen as ComfyUI does)

    kitchen = load_kitchen_autograd(pack)
    coverage = kitchen.ensure_backward()
    from importlib import metadata
    result = {"kitchen": metadata.version("comfy-kitchen"), "kitchen_file": sys.modules["comfy_kitchen"].__file__,
              "coverage": coverage, "cases": []}
    generator = torch.Generator().manual_seed(0)
    for name, label, inputs in cases(torch, generator):
        op = getattr(torch.ops.comfy_kitchen, name)
        as32 = [a.float() if isinstance(a, torch.Tensor) else a for a in inputs]
        with torch.no_grad():
            got, want = op(*as32), kitchen.REFERENCE[name](*as32)
        got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
        forward = max(float((g - w).abs().max() / w.abs().max()) for g, w in zip(got, want))

        leaves = [a.clone().requires_grad_(True) if isinstance(a, torch.Tensor) else a for a in as32]
        tensors = [a for a in leaves if isinstance(a, torch.Tensor)]
        weights = [torch.randn(o.shape, generator=generator) for o in got]

        def scalar(function, args):
            out = function(*args)
            out = out if isinstance(out, tuple) else (out,)
            return sum((o.double() * w).sum() for o, w in zip(out, weights))

        grads = torch.autograd.grad(scalar(op, leaves), tensors)
        expected = torch.autograd.grad(scalar(kitchen.REFERENCE[name], leaves), tensors)
        backward = max(float((g - e).abs().max() / e.abs().max().clamp_min(1e-30)) for g, e in zip(grads, expected))
        norm = sum(float(g.double().square().sum()) for g in grads) ** 0.5
        size = sum(t.numel() for t in tensors)
        random = [torch.randn(t.shape, generator=generator) for t in tensors]
        random_norm = sum(float(v.square().sum()) for v in random) ** 0.5
        errors = {}
        for kind, directions, floor in (("gradient_direction", [g / norm for g in grads], 0.0),
                                         ("random_direction", [v / random_norm for v in random], norm / size ** 0.5)):
            analytic = float(sum((g.double() * v).sum() for g, v in zip(grads, directions)))

            def central(step):
                def at(sign):
                    moved = iter([t.detach() + sign * step * v for t, v in zip(tensors, directions)])
                    with torch.no_grad():
                        return float(scalar(op, [next(moved) if isinstance(a, torch.Tensor) else a for a in leaves]))
                return (at(1.0) - at(-1.0)) / (2 * step)

            numeric = (4.0 * central(STEP / 2) - central(STEP)) / 3.0  # one Richardson step
            errors[kind] = abs(analytic - numeric) / max(abs(analytic), abs(numeric), floor, 1e-30)
        result["cases"].append({"op": name, "case": label, "forward": forward, "backward_vs_reference": backward,
                                **errors})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
