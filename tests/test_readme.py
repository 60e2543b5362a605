"""The README's Python tour runs as printed on a fresh clone, its commands exist, its model table is the registry's."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

import frugalvision as fv
from conftest import SHARED_DATA
from frugalvision.cli.main import build_parser
from frugalvision.models.registry import model_option_defaults


def _readme(repo_root: Path) -> str:
    return (repo_root / "README.md").read_text()


def _block(text: str, heading: str, language: str) -> str:
    section = text[text.index(heading):]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} block after {heading}"
    return match.group(1)


def _fresh_clone(repo_root: Path, into: Path) -> Path:
    """A copy of the repository's tracked files (as they are in the working tree) at ``into/repo``, with
    ``into/shared`` pointing to the shared data folder beside the repository: what a fresh clone sees."""
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=repo_root, capture_output=True, check=True).stdout
    clone = into / "repo"
    for name in filter(None, listing.decode().split("\0")):
        source = repo_root / name
        if source.is_file():  # a tracked file deleted in the working tree is not part of it
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    (into / "shared").symlink_to(SHARED_DATA.parent, target_is_directory=True)
    return clone


def _files(root: Path) -> set[Path]:
    return {path.relative_to(root) for path in root.rglob("*") if path.is_file()}


@pytest.mark.slow
def test_the_python_tour_runs_as_printed_on_a_fresh_clone(repo_root, tmp_path, monkeypatch, shared_data):
    """The tour's code, verbatim, from the root of a copy of the tracked files with ../shared beside it: every file
    it names is shipped or shared, every name it uses is defined in it, and it writes nothing."""
    shared_data("official/ResNet20-AdderNet.pth"), shared_data("cifar10_jpeg_10k")  # skip / fail without them
    clone = _fresh_clone(repo_root, tmp_path)
    before = _files(clone)
    monkeypatch.chdir(clone)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(_block(_readme(clone), "## A short tour", "python"), "README.md", "exec"), namespace)
    assert _files(clone) == before
    assert namespace["deployed"].deploy is True and namespace["vanilla"].deploy is False
    assert namespace["trained"].conv_type == "adder"
    assert namespace["int8"].frugalvision_cfg["quantized"]["layout"] == "resnet"
    (prediction,) = fv.predict(namespace["int8"], ["../shared/data/cifar10_jpeg_10k/val/cat/4500.jpg"], top_k=3)
    assert len(prediction.top_k) == 3 and prediction.top_k[0][0] in namespace["official"].data_config.class_names


def test_every_command_of_the_tour_parses(repo_root):
    parser = build_parser()
    lines = _block(_readme(repo_root), "## A short tour", "bash").splitlines()
    commands = [c for c in (line.split("#")[0].strip() for line in lines) if c.startswith("frugalvision ")]
    assert len(commands) >= 15
    for command in commands:
        parser.parse_args(shlex.split(command)[1:])  # argparse exits (SystemExit) on an unknown option or command


def _model_table_rows(text: str) -> list[tuple[list[str], str]]:
    """(model names, default-conv_type cell) of each row of the README's model table; ``a`` … ``b`` ranges are
    expanded to the registered names of that family in between (``vanillanet_5`` … ``vanillanet_13``)."""
    lines = text[text.index("## Models"):].splitlines()
    header = next(line for line in lines if line.startswith("| family"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    rows = []
    for line in lines[lines.index(header) + 2:]:
        if not line.startswith("|"):
            break
        cells = dict(zip(columns, (cell.strip() for cell in line.strip("|").split("|"))))
        names = []
        for part in cells["names"].split(", "):
            ends = re.findall(r"`(\w+)`", part)
            if "…" in part:
                (prefix, first), (_, last) = (re.fullmatch(r"(\D+)(\d+)", end).groups() for end in ends)
                between = (f"{prefix}{i}" for i in range(int(first), int(last) + 1))
                names += [name for name in between if fv.models.is_model(name)]
            else:
                names += ends
        rows.append((names, cells["default `conv_type`"]))
    return rows


def test_the_model_table_names_every_model_and_its_default_conv_type(repo_root):
    rows = _model_table_rows(_readme(repo_root))
    listed = [name for names, _ in rows for name in names]
    assert sorted(listed) == fv.list_models()
    for names, default in rows:
        for name in names:
            registered = model_option_defaults(name).get("conv_type")
            assert default == (f"`{registered}`" if registered is not None else "none"), (name, default)
