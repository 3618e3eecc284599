"""Setup for the psi_core tests.

* Puts this folder on sys.path so the test modules can import the shared helpers
  in core_testing.py under --import-mode=importlib.
* Runs every test here on one intra-op thread (restored afterwards): the core tests
  use many small tensors, and on a busy 2-core machine torch's thread pool made
  them up to 20× slower (measured: SSP resampling 0.2 ms vs 4.9 ms per call).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
