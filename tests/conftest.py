"""Fixtures shared by the whole test suite: the repository root and the shared data beside it.

Shared data (the official AdderNet checkpoint, the CIFAR-10 JPEG sample, ...) lives in ``../shared/data`` next to
the repository root; it is not part of a clone. A test that needs it asks the ``shared_data`` fixture for a path:

* on a user's clone without ``../shared`` the test is skipped, and the reason names the missing path;
* in CI (environment variable ``FRUGALVISION_REQUIRE_SHARED`` or ``CI`` set to anything but ``""``/``0``) the test
  fails with that message instead, so a missing data folder cannot silently turn tests into skips.

Paths are computed from this file, never from the working directory.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

import frugalvision  # noqa: F401  (before anything imports torch: sets OMP_WAIT_POLICY=PASSIVE, see omp_env)

__all__ = [
    "REPO_ROOT",
    "REQUIRE_SHARED_VARIABLES",
    "SHARED_DATA",
    "one_torch_thread",
    "repo_root",
    "shared_data",
    "shared_data_required",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
REQUIRE_SHARED_VARIABLES = ("FRUGALVISION_REQUIRE_SHARED", "CI")


def _requiring_variables() -> list[str]:
    return [name for name in REQUIRE_SHARED_VARIABLES if os.environ.get(name, "") not in ("", "0")]


def shared_data_required() -> bool:
    """Whether a missing shared-data path is an error (CI) rather than a skip (a user's clone)."""
    return bool(_requiring_variables())


def _shared_path(relative: str | Path) -> Path:
    path = SHARED_DATA / relative
    if path.exists():
        return path
    message = f"shared test data {path} is missing (../shared/data beside the repository is not part of a clone)"
    if shared_data_required():
        set_by = " and ".join(_requiring_variables())
        pytest.fail(f"{message}; {set_by} set, so this is an error, not a skip", pytrace=False)
    pytest.skip(f"{message}; set FRUGALVISION_REQUIRE_SHARED=1 to make this an error")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding pyproject.toml), independent of the working directory."""
    return REPO_ROOT


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run a module's tests with one torch intra-op thread (``pytestmark = pytest.mark.usefixtures(...)``): tiny
    batches gain nothing from threads, and on a busy machine spinning threads cost seconds."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def load_tool() -> Callable[[str], ModuleType]:
    """``load_tool("results_table")``: ``tools/results_table.py`` imported as a module (tools/ is not a package)."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tools" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def shared_data() -> Callable[[str | Path], Path]:
    """``shared_data("official/ResNet20-AdderNet.pth")``: that path under ../shared/data, or skip / fail (see above)."""
    return _shared_path
