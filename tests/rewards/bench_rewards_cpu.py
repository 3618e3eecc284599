"""Run the reward CPU benchmark (not collected by pytest):

    .venv/bin/python tests/rewards/bench_rewards_cpu.py [--batch 1] [--detector-side 512]
"""

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
_spec = importlib.util.spec_from_file_location("_tests_root_conftest", HERE.parent / "conftest.py")
_spec.loader.exec_module(importlib.util.module_from_spec(_spec))  # registers the package psi_sampler

from rewards_testing import make_bert_tokenizer, make_clip_tokenizer  # noqa: E402
from psi_sampler.rewards.bench import benchmark_rewards  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--image-side", type=int, default=512)
    parser.add_argument("--detector-side", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    benchmark_rewards(make_bert_tokenizer(), make_clip_tokenizer(), args.image_side, args.detector_side,
                      args.batch, args.repeats)
