"""Smoke test of bench/toy_bench.py, the equal-NFE verdict: a tiny run of the script's own table
functions (2 seeds, d = 2, 150 NFE), loaded from the script as it runs from the command line."""

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load_toy_bench():
    sys.path.insert(0, str(BENCH))  # the script imports its sibling bench/pack.py
    try:
        spec = importlib.util.spec_from_file_location("toy_bench", BENCH / "toy_bench.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


toy_bench = _load_toy_bench()


def test_verdict_bench_rows_cover_every_method_and_report_no_failures():
    lines = toy_bench.verdict_table([2], 2, "tweedie", nfe=150)
    rows = lines[2:]
    assert [row.split(" | ")[2] for row in rows] == [name for _, _, name in toy_bench.VERDICT_ROWS]
    assert all(row.split(" | ")[-2] == "0/2" for row in rows)  # no diverging or all-invalid run
    tempered = toy_bench.tempered_psi_row(2, 2, "tweedie", nfe=150)
    assert tempered.startswith("| tweedie | 2 | Ψ, tempered initial tilt (λ_0 ") and tempered.split(" | ")[-2] == "0/2"
