"""The ``shared_data`` and ``repo_root`` fixtures of tests/conftest.py: skip on a clone, fail in CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

VARIABLES = ("FRUGALVISION_REQUIRE_SHARED", "CI")


def _outcome(shared_data, relative: str) -> pytest.ExceptionInfo:
    """What ``shared_data(relative)`` raises, caught whatever it is: a skip escaping ``pytest.raises(Failed)`` would
    turn this test into a skip instead of a failure."""
    with pytest.raises(BaseException) as info:
        shared_data(relative)
    return info


@pytest.mark.parametrize("values", [{}, {"CI": "0", "FRUGALVISION_REQUIRE_SHARED": ""}], ids=["unset", "off"])
def test_missing_shared_path_skips_on_a_clone_and_says_what_is_missing(shared_data, monkeypatch, values) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    outcome = _outcome(shared_data, "no_such_dir/no_such_file.pth")
    assert outcome.type is pytest.skip.Exception, f"expected a skip, got {outcome.typename}: {outcome.value}"
    assert re.search(r"shared test data .*no_such_dir/no_such_file\.pth is missing", str(outcome.value))


@pytest.mark.parametrize("variable", VARIABLES)
def test_missing_shared_path_fails_in_ci(shared_data, monkeypatch, variable: str) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "true")
    outcome = _outcome(shared_data, "no_such_file.pth")
    assert outcome.type is pytest.fail.Exception, f"expected a failure, got {outcome.typename}: {outcome.value}"
    assert re.search(rf"no_such_file\.pth is missing .*; {variable} set, so this is an error", str(outcome.value))


def test_shared_data_is_looked_up_beside_the_repository(shared_data, repo_root: Path, monkeypatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    outcome = _outcome(shared_data, "no_such_file.pth")
    assert str(repo_root.parent / "shared" / "data" / "no_such_file.pth") in str(outcome.value)


def test_repo_root_is_the_project_root_wherever_pytest_runs(repo_root: Path, monkeypatch, tmp_path: Path) -> None:
    """The project's own files are there (not the file layout restated), also with another working directory."""
    monkeypatch.chdir(tmp_path)
    assert repo_root.is_absolute()
    assert 'name = "frugalvision"' in (repo_root / "pyproject.toml").read_text(encoding="utf-8")
    assert (repo_root / "src" / "frugalvision" / "__init__.py").is_file() and (repo_root / "recipes").is_dir()
