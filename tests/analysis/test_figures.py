"""Figures: every plot kind from fresh tiny runs (fake data, one epoch), fits, labels and legends."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from frugalvision import create_model
from frugalvision.analysis import figures
from frugalvision.cli.main import main
from frugalvision.errors import CheckpointError
from frugalvision.run_dir import RunDir
from frugalvision.train.runs import train_twins

TINY = {"dataset": "fake", "fake_input_size": [1, 28, 28], "fake_size": 32, "epochs": 1, "batch_size": 16,
        "eval_batch_size": 32, "bn_recalibration_batches": 2}
PP_TINY = {**TINY, "fake_size": 16, "eval_batch_size": 16, "bn_recalibration_batches": 1}  # LeNet++: 81M MAC/image
FAKE_DATA = {"fake_input_size": (1, 28, 28), "fake_size": 16}


@pytest.fixture(scope="module")
def lenet_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """CNN and AdderNet LeNet-5-BN, one epoch on 32 fake digits."""
    out = tmp_path_factory.mktemp("runs")
    return train_twins("lenet5_bn", output=out, log=None, **TINY)


def _check_png(path: Path) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _check_axes(fig: Figure, legend: bool = True) -> None:
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert axes
    for ax in axes:
        if not ax.get_visible():
            continue
        assert ax.get_xlabel() or ax.get_ylabel() or ax.get_title()
    if legend:
        assert any(ax.get_legend() is not None for ax in axes) or fig.legends


def test_fits_recover_parameters() -> None:
    rng = np.random.default_rng(0)
    laplace = rng.laplace(0.3, 0.5, 200_000)
    mu, b = figures.fit_laplace(laplace)
    assert mu == pytest.approx(0.3, abs=0.01) and b == pytest.approx(0.5, rel=0.01)
    gauss = rng.normal(-1.0, 2.0, 200_000)
    mu, sigma = figures.fit_gaussian(gauss)
    assert mu == pytest.approx(-1.0, abs=0.02) and sigma == pytest.approx(2.0, rel=0.01)
    # the right family has the higher mean log-likelihood, and the values match the closed-form entropies
    assert figures.laplace_log_likelihood(laplace, *figures.fit_laplace(laplace)) > figures.gaussian_log_likelihood(
        laplace, *figures.fit_gaussian(laplace))
    assert figures.gaussian_log_likelihood(gauss, *figures.fit_gaussian(gauss)) > figures.laplace_log_likelihood(
        gauss, *figures.fit_laplace(gauss))
    assert figures.gaussian_log_likelihood(gauss, -1.0, 2.0) == pytest.approx(
        -0.5 * math.log(2 * math.pi * math.e * 4.0), abs=0.01)
    assert figures.laplace_log_likelihood(laplace, 0.3, 0.5) == pytest.approx(-(1 + math.log(2 * 0.5)), abs=0.01)


def test_weight_distribution_picks_largest_layer() -> None:
    model = create_model("lenet5_bn", conv_type="adder")
    dist = figures.weight_distribution(model)
    assert dist["layer"] == "classifier.0" and dist["kind"] == "Adder2d" and dist["weights"].size == 120 * 16 * 25
    assert dist["better"] in ("laplace", "gaussian")
    with pytest.raises(ValueError, match="no layer"):
        figures.weight_distribution(model, "nope")


def test_filters_and_weights_from_runs(lenet_runs: dict[str, Path], tmp_path: Path) -> None:
    sources = [lenet_runs["conv"], lenet_runs["adder"]]
    fig = figures.plot_filters(sources)
    _check_axes(fig, legend=False)
    assert len([ax for ax in fig.axes if ax.get_label() == "<colorbar>"]) == 2  # one colour scale per model
    assert "CNN" in fig.axes[0].get_ylabel()
    _check_png(figures.save_figure(fig, tmp_path / "filters.png"))

    fig = figures.plot_weights(sources)
    _check_axes(fig)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("CNN") and titles[1].startswith("AdderNet")
    legend_text = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("Laplace" in t and "log-lik" in t for t in legend_text)
    assert any("Gauss" in t and "log-lik" in t for t in legend_text)
    _check_png(figures.save_figure(fig, tmp_path / "weights.png"))


def test_train_twins_refuses_runs_with_other_settings(lenet_runs: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"other settings \(epochs\)"):
        train_twins("lenet5_bn", output=lenet_runs["conv"].parent, log=None, **{**TINY, "epochs": 2})


def test_curves_from_runs(lenet_runs: dict[str, Path], tmp_path: Path) -> None:
    fig = figures.plot_curves(list(lenet_runs.values()))
    _check_axes(fig)
    assert [ax.get_title() for ax in fig.axes] == ["Loss", "Accuracy", "Learning rate"]
    assert fig.axes[0].get_xlabel() == "epoch"
    _check_png(figures.save_figure(fig, tmp_path / "curves.png"))
    with pytest.raises(ValueError, match="unknown curve panel"):
        figures.plot_curves(list(lenet_runs.values()), panels=["nope"])
    with pytest.raises(CheckpointError, match=r"metrics\.csv"):
        figures.read_metrics(tmp_path)


def test_curves_show_vanillanet_lambda(tmp_path: Path) -> None:
    run = tmp_path / "vanilla"
    run.mkdir()
    RunDir(run).metrics_file.write_text("epoch,lr,train_loss,train_top1,epoch_seconds,val_top1,val_top5,val_loss,"
                                     "act_learn\n1,0.1,2.0,20,1,30,70,1.9,0.5\n2,0.05,1.5,40,1,50,90,1.4,1.0\n")
    fig = figures.plot_curves([run])
    assert fig.axes[-1].get_title().startswith("VanillaNet λ")


def test_features_of_trained_lenet_pp(tmp_path: Path) -> None:
    runs = train_twins("lenet_pp", output=tmp_path, model_kwargs={"feature_dim": 2}, run_prefix="pp",
                               log=None, **PP_TINY)
    assert sorted(p.name for p in runs.values()) == ["pp_adder", "pp_conv"]
    fig = figures.plot_features([runs["conv"], runs["adder"]], "fake", "val", max_points=12, data_kwargs=FAKE_DATA)
    _check_axes(fig)
    assert fig.axes[0].get_title().startswith("CNN") and fig.axes[1].get_title().startswith("AdderNet")
    _check_png(figures.save_figure(fig, tmp_path / "features.png"))
    # a second call reuses the finished runs instead of training again
    messages: list[str] = []
    train_twins("lenet_pp", output=tmp_path, model_kwargs={"feature_dim": 2}, run_prefix="pp",
                        log=messages.append, **PP_TINY)
    assert all(m.startswith("Reusing") for m in messages) and len(messages) == 2


def test_features_3d_and_errors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    models = {"CNN": create_model("lenet_pp", conv_type="conv", feature_dim=3),
              "AdderNet": create_model("lenet_pp", conv_type="adder", feature_dim=3)}
    fig = figures.plot_features(models, "fake", "val", max_points=16, data_kwargs=FAKE_DATA)
    _check_axes(fig)
    assert fig.legends  # one legend outside the 3-D panels
    _check_png(figures.save_figure(fig, tmp_path / "features3d.png"))
    with pytest.raises(ValueError, match="forward_features"):
        figures.plot_features([create_model("lenet5_bn")], "fake", data_kwargs=FAKE_DATA)


def test_plot_cli(lenet_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for kind in ("filters", "weights", "curves"):
        out = tmp_path / f"{kind}.png"
        args = ["plot", kind, "--checkpoint", str(lenet_runs["conv"]), "--checkpoint", str(lenet_runs["adder"]),
                "--output", str(out)]
        assert main(args) == 0
        _check_png(out)
    assert main(["plot", "weights", "--checkpoint", str(lenet_runs["adder"]), "--label", "a", "--label", "b",
                 "--output", str(tmp_path / "x.png")]) == 2
    assert main(["plot", "features", "--output", str(tmp_path / "x.png")]) == 2
    assert main(["plot", "curves", "--train", "--output", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "needs --checkpoint" in err and "--label" in err
