"""OpenMP's wait policy (frugalvision.omp_env): torch imported first, without OMP_WAIT_POLICY, gets one warning on the
first numba kernel call; frugalvision first, or the policy set, gets none. Each case in a fresh interpreter (the
policy is read when a library loads)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

WARNING = "torch was imported before frugalvision without OMP_WAIT_POLICY set"
CALLS = "from frugalvision.ops.cpu.adder_numba import sync_threads\nsync_threads()\nsync_threads()\n"


def _stderr(first: str, second: str, **environment: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | environment
    code = f"import {first}\nimport {second}\n{CALLS}"
    done = subprocess.run([sys.executable, "-W", "always::RuntimeWarning", "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_torch_first_without_a_policy_warns_once():
    stderr = _stderr("torch", "frugalvision")
    assert stderr.count(WARNING) == 1 and "OMP_WAIT_POLICY=PASSIVE" in stderr


@pytest.mark.parametrize("first, second, environment", [
    ("frugalvision", "torch", {}),  # the default reaches torch's libgomp
    ("torch", "frugalvision", {"OMP_WAIT_POLICY": "PASSIVE"}),  # the user chose
])
def test_no_warning_when_the_policy_reached_torch(first, second, environment):
    assert WARNING not in _stderr(first, second, **environment)
