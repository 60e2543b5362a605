"""The AdderNet optimisation ablation: full-precision vs sign weight gradient × ALR / ILR / no LR scaling.

The paper (Chen et al., CVPR 2020, Sec. 4) trains LeNet-5-BN on MNIST with every combination and finds the
full-precision gradient (Eq. 5) with the adaptive learning rate (Eq. 13) best. :func:`run_addernet_optim` trains
the same 2 × 3 grid with frugalvision's engine (AdderNet LeNet-5-BN, every layer an adder layer), then writes

- a table as CSV and Markdown (best and final validation top-1, final training loss, time per epoch), and
- one figure with the learning curves of the six runs (colour: LR mode, line style: gradient).

Runs live in ``output/{grad}_{alr}``; finished runs with the same settings are reused and unfinished ones resumed,
so an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..run_dir import RunDir

__all__ = [
    "ABLATIONS",
    "ADDERNET_OPTIM_GRADS",
    "ADDERNET_OPTIM_LR_MODES",
    "AblationResult",
    "markdown_table",
    "plot_addernet_optim",
    "run_addernet_optim",
]

ADDERNET_OPTIM_GRADS = ("full", "sign")
ADDERNET_OPTIM_LR_MODES = ("alr", "ilr", "none")
_GRAD_NAMES = {"full": "full-precision (Eq. 5)", "sign": "sign"}
_LR_NAMES = {"alr": "ALR (η = 0.2)", "ilr": "ILR (×100)", "none": "none"}
COLUMNS = ("weight_grad", "lr_scaling", "best_val_top1", "final_val_top1", "final_train_loss", "epochs",
           "seconds_per_epoch", "run_dir")


@dataclass
class AblationResult:
    """What an ablation produced: one row per run, the settings, and the files written."""

    rows: list[dict[str, Any]]
    settings: dict[str, Any]
    runs: dict[str, Path] = field(default_factory=dict)
    csv_path: Path | None = None
    markdown_path: Path | None = None
    figure_path: Path | None = None


def _summarise(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "best_val_top1": round(max(row["val_top1"] for row in history), 2),
        "final_val_top1": round(history[-1]["val_top1"], 2),
        "final_train_loss": round(history[-1]["train_loss"], 4),
        "epochs": len(history),
        "seconds_per_epoch": round(sum(row["epoch_seconds"] for row in history) / len(history), 2),
    }


def run_addernet_optim(
    output: str | os.PathLike = "runs/ablation_addernet_optim",
    *,
    epochs: int = 5,
    dataset: str = "mnist5k",
    grads: Sequence[str] = ADDERNET_OPTIM_GRADS,
    lr_modes: Sequence[str] = ADDERNET_OPTIM_LR_MODES,
    table: str | os.PathLike | None = None,
    figure: str | os.PathLike | None = None,
    retrain: bool = False,
    log: Callable[[str], None] | None = print,
    **config: Any,
) -> AblationResult:
    """Train AdderNet LeNet-5-BN for each (weight gradient, LR mode) pair and write the table and figure.

    Args:
        output: parent folder of the run folders.
        epochs: epochs per run (cosine schedule over them, from the model's default learning rate 0.1).
        dataset: training data (``mnist5k``: 4,500 train / 500 validation digits; ``fake`` for tests).
        table: Markdown path of the table (the CSV goes next to it, same name, ``.csv``); default
            ``output/ablation_addernet_optim.md``.
        figure: PNG path of the learning-curve figure; default ``output/ablation_addernet_optim.png``.
        retrain: start every run afresh instead of reusing or resuming.
        config: further :class:`~frugalvision.train.config.TrainConfig` fields (``batch_size``, ``lr``, ``seed``...).
    """
    from ..train.runs import resolve_config, train_twins
    from .figures import save_figure

    for grad in grads:
        if grad not in ADDERNET_OPTIM_GRADS:
            raise ConfigError(f"weight gradient must be one of {', '.join(ADDERNET_OPTIM_GRADS)}, got {grad!r}")
    for mode in lr_modes:
        if mode not in ADDERNET_OPTIM_LR_MODES:
            raise ConfigError(f"LR mode must be one of {', '.join(ADDERNET_OPTIM_LR_MODES)}, got {mode!r}")
    output = Path(output)
    rows, runs = [], {}
    for grad in grads:
        for mode in lr_modes:
            key = f"{grad}_{mode}"
            run = train_twins("lenet5_bn", conv_types=("adder",), output=output, run_prefix=key,
                              model_kwargs={"weight_grad": grad}, retrain=retrain, log=log, epochs=epochs,
                              dataset=dataset, alr=mode, **config)["adder"]
            runs[key] = run
            history = RunDir(run).read_metrics()
            rows.append({"weight_grad": grad, "lr_scaling": mode, **_summarise(history), "run_dir": str(run)})
    cfg = resolve_config("lenet5_bn", None, epochs=epochs, dataset=dataset, **config)
    settings = {"model": "lenet5_bn (every layer adder)", "dataset": dataset, "epochs": epochs,
                "batch_size": cfg.batch_size, "lr": cfg.lr, "scheduler": cfg.scheduler, "optimizer": cfg.optimizer,
                "momentum": cfg.momentum, "weight_decay": cfg.weight_decay, "alr_eta": cfg.alr_eta,
                "augment": cfg.augment, "seed": cfg.seed}
    result = AblationResult(rows=rows, settings=settings, runs=runs)
    md_path = Path(table) if table else output / "ablation_addernet_optim.md"
    result.csv_path = md_path.with_suffix(".csv")
    result.markdown_path = md_path.with_suffix(".md") if md_path.suffix != ".md" else md_path
    result.markdown_path.parent.mkdir(parents=True, exist_ok=True)
    with result.csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    result.figure_path = save_figure(plot_addernet_optim(runs, settings),
                                     Path(figure) if figure else output / "ablation_addernet_optim.png")
    result.markdown_path.write_text(markdown_table(rows, settings, figure=result.figure_path,
                                                   relative_to=result.markdown_path.parent))
    return result


def markdown_table(rows: Sequence[dict[str, Any]], settings: dict[str, Any], *, figure: Path | None = None,
                   relative_to: Path | None = None) -> str:
    """The ablation table as a Markdown document with its settings (and a link to the figure)."""
    best = max(rows, key=lambda r: r["best_val_top1"]) if rows else None
    lines = [
        "# AdderNet optimisation ablation (measured)",
        "",
        f"AdderNet LeNet-5-BN (every layer an adder layer) on `{settings['dataset']}`, "
        f"{settings['epochs']} epochs per run, {settings['optimizer']} (momentum {settings['momentum']}, "
        f"weight decay {settings['weight_decay']}), batch {settings['batch_size']}, lr {settings['lr']} with a "
        f"{settings['scheduler']} schedule, augmentation {'on' if settings['augment'] else 'off'}, seed "
        f"{settings['seed']}. ALR: η = {settings['alr_eta']}, applied to the final gradient; ILR: adder weights get "
        "100× the learning rate; none: plain gradients. Accuracy on the held-out validation split.",
        "",
        "| weight gradient | LR scaling | best val top-1 % | final val top-1 % | final train loss | s/epoch |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        mark = "**" if row is best else ""
        grad, mode = _GRAD_NAMES.get(row["weight_grad"], row["weight_grad"]), _LR_NAMES.get(row["lr_scaling"],
                                                                                            row["lr_scaling"])
        lines.append(f"| {grad} | {mode} | {mark}{row['best_val_top1']:.2f}{mark} | {row['final_val_top1']:.2f} | "
                     f"{row['final_train_loss']:.4f} | {row['seconds_per_epoch']:.1f} |")
    lines += ["", "Seconds per epoch were measured on a shared machine; compare them only within one table.", "",
              f"Reproduce: `frugalvision ablation addernet-optim --epochs {settings['epochs']} --dataset "
              f"{settings['dataset']}` (finished runs are reused; add `--table`/`--figure` to choose where these "
              "files go)."]
    if figure is not None:
        shown = os.path.relpath(figure, relative_to) if relative_to is not None else str(figure)
        lines += ["", f"![learning curves of the ablation]({Path(shown).as_posix()})"]
    return "\n".join(lines) + "\n"


def plot_addernet_optim(runs: dict[str, Path], settings: dict[str, Any] | None = None) -> Any:
    """Learning curves of the grid: training loss (log scale) and validation top-1 per epoch."""
    from .figures import plot_curves

    colours = {"alr": "tab:red", "ilr": "tab:blue", "none": "tab:gray"}
    labelled, styles = {}, {}
    for key, run in runs.items():
        grad, mode = key.split("_", 1)
        label = f"{grad} grad, {_LR_NAMES.get(mode, mode)}"
        labelled[label] = run
        styles[label] = {"color": colours.get(mode, "black"), "linestyle": "-" if grad == "full" else "--"}
    title = "AdderNet LeNet-5-BN: weight gradient × learning-rate scaling"
    if settings:
        title += f" ({settings['dataset']}, {settings['epochs']} epochs)"
    return plot_curves(labelled, panels=("train_loss", "val_top1"), styles=styles, log_loss=True, title=title)


ABLATIONS = {"addernet-optim": run_addernet_optim}
