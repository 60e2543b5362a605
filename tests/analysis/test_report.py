"""Run report: one self-contained HTML file (no external assets, figures embedded)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from frugalvision.analysis.report import write_report
from frugalvision.cli.main import main
from frugalvision.run_dir import RunDir
from frugalvision.train.runs import train_twins


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    runs = train_twins("lenet5_bn", conv_types=("adder",), output=out, log=None, dataset="fake",
                       fake_input_size=[1, 28, 28], fake_size=32, epochs=2, batch_size=16, eval_batch_size=32,
                       bn_recalibration_batches=2)
    return runs["adder"]


@pytest.fixture(scope="module")
def report(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = write_report(run_dir, tmp_path_factory.mktemp("out") / "sub" / "report.html", title="<b>run & co</b>")
    assert path.is_file()
    return path.read_text(encoding="utf-8")


def test_report_is_self_contained(report: str) -> None:
    text = report
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    # no external assets: no network src/href, no scripts, no external style sheets
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower() and "<link" not in text.lower()
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 3  # curves, weights, filters
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    for section in ("Figures", "Cost", "Metrics per epoch", "Configuration"):
        assert f"<h2>{section}</h2>" in text
    assert "lenet5_bn" in text and "<td class=\"l\">adder2d</td>" in text  # per-layer cost table
    assert text.count("<tr><td>") >= 2  # one metrics row per epoch


def test_report_escapes_title(report: str) -> None:
    assert "&lt;b&gt;run &amp; co&lt;/b&gt;" in report and "<b>run" not in report


def test_report_cli(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run_dir)]) == 0
    assert RunDir(run_dir).report_file.is_file()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "run folder not found" in capsys.readouterr().err
