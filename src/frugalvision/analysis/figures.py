"""Figures of the AdderNet paper and of training runs, drawn with matplotlib.

Every function here is pure: it takes models, checkpoints or run folders and returns a
:class:`matplotlib.figure.Figure` built without ``pyplot`` (no global state, no display; PNGs are rendered by the
Agg canvas). Save one with :func:`save_figure` or turn it into PNG bytes with :func:`figure_png`.

Kinds (also ``frugalvision plot KIND``):

- :func:`plot_features`: the 2-D (or 3-D) feature layer of LeNet++, CNN vs AdderNet side by side (paper Fig. 1:
  CNN features separate by angle, AdderNet features cluster around class centres).
- :func:`plot_filters`: the first-layer filters of each model, one row per model.
- :func:`plot_weights`: a layer's weight histogram with maximum-likelihood Laplace and Gaussian densities and their
  mean log-likelihoods (the paper: AdderNet weights look Laplace, CNN weights Gaussian).
- :func:`plot_curves`: learning curves (loss, accuracy, learning rate, and VanillaNet's λ) of run folders.

The runs these figures compare are trained by :func:`frugalvision.train.runs.train_twins`; this module only draws.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import nn

from ..errors import ConfigError
from ..run_dir import RunDir

__all__ = [
    "CONV_TYPE_LABELS",
    "extract_features",
    "figure_png",
    "first_layer",
    "fit_gaussian",
    "fit_laplace",
    "gaussian_log_likelihood",
    "laplace_log_likelihood",
    "plot_curves",
    "plot_features",
    "plot_filters",
    "plot_weights",
    "read_metrics",
    "resolve_models",
    "save_figure",
    "weight_distribution",
    "weight_layers",
]

PathLike = str | os.PathLike
ModelSource = nn.Module | PathLike
ModelSources = Mapping[str, ModelSource] | Sequence[ModelSource]

CONV_TYPE_LABELS = {"conv": "CNN", "adder": "AdderNet", "binary": "BNN", "adaptive": "adaptive"}

# ----------------------------------------------------------------------------------------------------------------
# Inputs: models, checkpoints, run folders


def _label_for_config(config: Mapping[str, Any] | None, fallback: str) -> str:
    if not config:
        return fallback
    kwargs = config.get("kwargs", {}) or {}
    conv_type = kwargs.get("conv_type")
    label = CONV_TYPE_LABELS.get(conv_type, config.get("model", fallback)) if conv_type else config.get("model",
                                                                                                       fallback)
    if kwargs.get("weight_grad") == "sign":
        label += ", sign grad"
    return str(label)


def _label_for_model(model: nn.Module, index: int) -> str:
    if getattr(model, "frugalvision_cfg", None):
        return _label_for_config(model.frugalvision_cfg, f"{type(model).__name__} #{index + 1}")
    conv_type = getattr(model, "conv_type", None)
    if conv_type in CONV_TYPE_LABELS:
        return CONV_TYPE_LABELS[conv_type]
    return f"{type(model).__name__} #{index + 1}"


def resolve_models(sources: ModelSources) -> list[tuple[str, nn.Module, dict[str, Any]]]:
    """Turn models, checkpoint files and run folders into ``(label, model in eval mode, info)`` triples.

    ``sources`` is a mapping ``label -> source`` or a sequence of sources; labels of a sequence come from the
    checkpoint's conv type ("CNN", "AdderNet", "BNN") or the model class. ``info`` holds the checkpoint's stored
    metadata (``metrics``, ``epoch``, ``dataset``) when there is one.
    """
    from ..models import load_model, read_checkpoint_config

    items = list(sources.items()) if isinstance(sources, Mapping) else [(None, s) for s in sources]
    if not items:
        raise ConfigError("no model or checkpoint given")
    resolved = []
    for index, (label, source) in enumerate(items):
        if isinstance(source, nn.Module):
            resolved.append((label or _label_for_model(source, index), source.eval(), {}))
            continue
        config = read_checkpoint_config(source)
        model = load_model(source)
        resolved.append((label or _label_for_config(config, Path(source).name), model, dict(config or {})))
    return resolved


def read_metrics(run_dir: PathLike) -> list[dict[str, float]]:
    """The rows of a run folder's metrics table as floats (empty cells are skipped); ``run_dir`` may also be a file
    inside the folder (its ``metrics.csv``, say). See :meth:`frugalvision.run_dir.RunDir.read_metrics`."""
    path = Path(run_dir)
    return RunDir(path.parent if path.is_file() else path).read_metrics()


# ----------------------------------------------------------------------------------------------------------------
# Output


def save_figure(fig: Figure, path: PathLike, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix, PNG by default), creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """PNG bytes of ``fig`` (for embedding in HTML)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, bbox_inches="tight", format="png")
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------------------
# features (paper Fig. 1)


@torch.no_grad()
def extract_features(
    model: nn.Module,
    dataset: str = "mnist5k",
    split: str = "val",
    *,
    max_points: int | None = None,
    batch_size: int = 500,
    data_dir: str | None = None,
    data_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``model.forward_features`` on (a random subset of ``max_points`` of) a dataset split: ``(features, labels)``.

    ``data_kwargs`` go to :func:`~frugalvision.data.build_dataset` (e.g. ``fake_input_size`` for ``fake``).
    """
    from ..data import build_dataset

    if not hasattr(model, "forward_features"):
        raise ConfigError(f"{type(model).__name__} has no forward_features(); use a LeNet++ model (lenet_pp)")
    data = build_dataset(dataset, split, augment=False, data_dir=data_dir, **(data_kwargs or {}))
    indices = list(range(len(data)))
    if max_points is not None and max_points < len(indices):
        generator = torch.Generator().manual_seed(seed)
        indices = torch.randperm(len(indices), generator=generator)[:max_points].sort().values.tolist()
    device = next(iter(model.parameters()), torch.empty(0)).device
    model.eval()
    features, labels = [], []
    for start in range(0, len(indices), batch_size):
        batch = [data[i] for i in indices[start:start + batch_size]]
        images = torch.stack([b[0] for b in batch]).to(device)
        features.append(model.forward_features(images).float().cpu().numpy())
        labels.append(np.asarray([int(b[1]) for b in batch]))
    return np.concatenate(features), np.concatenate(labels)


def _class_colours(num: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if num <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(num)]


def plot_features(
    sources: ModelSources,
    dataset: str = "mnist5k",
    split: str = "val",
    *,
    max_points: int | None = 2000,
    data_dir: str | None = None,
    data_kwargs: Mapping[str, Any] | None = None,
    point_size: float = 6.0,
) -> Figure:
    """Scatter the feature layer (2-D or 3-D) of each model, one panel per model, coloured by class.

    The models need ``forward_features(x) -> (N, 2 | 3)``, like ``create_model("lenet_pp", feature_dim=2)``.
    """
    resolved = resolve_models(sources)
    panels = []
    for label, model, info in resolved:
        feats, labels = extract_features(model, dataset, split, max_points=max_points, data_dir=data_dir,
                                         data_kwargs=data_kwargs)
        if feats.ndim != 2 or feats.shape[1] not in (2, 3):
            raise ConfigError(f"{label}: forward_features gives {feats.shape[1:]} features; 2 or 3 can be drawn")
        panels.append((label, feats, labels, info))
    dims = {p[1].shape[1] for p in panels}
    if len(dims) != 1:
        raise ConfigError("the models' feature layers differ in size; compare 2-D with 2-D and 3-D with 3-D")
    dim = dims.pop()
    classes = sorted({int(c) for p in panels for c in p[2]})
    colours = _class_colours(max(classes) + 1)
    fig = Figure(figsize=(5.2 * len(panels), 5.0), layout="constrained")
    for i, (label, feats, labels, info) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1, **({"projection": "3d"} if dim == 3 else {}))
        for c in classes:
            points = feats[labels == c]
            ax.scatter(*points.T, s=point_size, color=colours[c], label=str(c), alpha=0.75, linewidths=0)
        ax.set_xlabel("feature 1")
        ax.set_ylabel("feature 2")
        if dim == 3:
            ax.set_zlabel("feature 3")
        else:
            ax.axhline(0, color="0.7", lw=0.6, zorder=0)
            ax.axvline(0, color="0.7", lw=0.6, zorder=0)
        accuracy = (info.get("metrics") or {}).get("val_top1")
        ax.set_title(label + (f" (val top-1 {accuracy:.1f} %)" if accuracy is not None else ""))
        if dim == 3:
            ax.set_box_aspect(None, zoom=0.85)
        else:
            ax.legend(title="class", loc="best", fontsize="small", markerscale=2.0, ncols=2)
    if dim == 3:  # a 3-D panel has no free corner: one legend for all panels, outside them
        handles, names = fig.axes[0].get_legend_handles_labels()
        fig.legend(handles, names, title="class", loc="outside right center", fontsize="small", markerscale=2.0)
    fig.suptitle(f"{dim}-D features of {len(panels[0][1])} {dataset} {split} images")
    return fig


# ----------------------------------------------------------------------------------------------------------------
# filters


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose ``weight`` is a 4-D filter bank (convolutions, adder, binary and adaptive layers)."""
    layers = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() == 4 and module is not model:
            layers.append((name, module))
    return layers


def first_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """``(name, module)`` of the first filter bank of ``model`` (registration order)."""
    layers = weight_layers(model)
    if not layers:
        raise ConfigError(f"{type(model).__name__} has no convolution-like layer with a 4-D weight")
    return layers[0]


def _filter_images(weight: torch.Tensor, max_filters: int) -> np.ndarray:
    """(out, in, kh, kw) -> (n, kh, kw) grey images (one input channel or the channel mean) or (n, kh, kw, 3)."""
    w = weight.detach().float().cpu()[:max_filters]
    if w.shape[1] == 3:  # RGB: scale each filter to 0..1
        lo = w.amin(dim=(1, 2, 3), keepdim=True)
        hi = w.amax(dim=(1, 2, 3), keepdim=True)
        return ((w - lo) / (hi - lo).clamp_min(1e-12)).permute(0, 2, 3, 1).numpy()
    return w.mean(dim=1).numpy()


def plot_filters(sources: ModelSources, *, layer: str | None = None, max_filters: int = 16) -> Figure:
    """The first-layer filters (or those of module ``layer``) of each model: one row per model, one shared colour
    scale per row with its colour bar."""
    resolved = resolve_models(sources)
    rows = []
    for label, model, _ in resolved:
        if layer is None:
            name, module = first_layer(model)
        else:
            module = dict(model.named_modules()).get(layer)
            if module is None or getattr(module, "weight", None) is None or module.weight.dim() != 4:
                raise ConfigError(f"{label}: no filter bank named {layer!r}; try one of "
                                 f"{', '.join(n for n, _ in weight_layers(model)[:6])}")
            name = layer
        rows.append((label, name, type(module).__name__, _filter_images(module.weight, max_filters)))
    columns = max(len(r[3]) for r in rows)
    fig = Figure(figsize=(1.15 * columns + 1.6, 1.45 * len(rows) + 0.6), layout="constrained")
    grid = fig.subplots(len(rows), columns, squeeze=False)
    for r, (label, name, kind, images) in enumerate(rows):
        grey = images.ndim == 3
        limit = float(np.abs(images).max()) if grey else 1.0
        mappable = None
        for c in range(columns):
            ax = grid[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(images):
                ax.set_visible(False)
                continue
            mappable = ax.imshow(images[c], cmap="gray" if grey else None, vmin=-limit if grey else None,
                                 vmax=limit if grey else None, interpolation="nearest")
            if r == 0 or len({len(x[3]) for x in rows}) > 1:
                ax.set_title(f"filter {c + 1}", fontsize="small")
            if r == len(rows) - 1:
                ax.set_xlabel(f"{images.shape[2]}×{images.shape[1]}", fontsize="x-small")
        grid[r, 0].set_ylabel(f"{label}\n{name} ({kind})", fontsize="small")
        if grey and mappable is not None:
            fig.colorbar(mappable, ax=list(grid[r, :]), shrink=0.9, label="weight")
    fig.suptitle("First-layer filters" if layer is None else f"Filters of {layer}")
    return fig


# ----------------------------------------------------------------------------------------------------------------
# weights: Laplace vs Gaussian


def fit_laplace(x: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood Laplace fit: location = median, scale b = mean |x - median|."""
    x = np.asarray(x, dtype=np.float64).ravel()
    mu = float(np.median(x))
    return mu, max(float(np.mean(np.abs(x - mu))), 1e-12)


def fit_gaussian(x: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood Gaussian fit: mean and (population) standard deviation."""
    x = np.asarray(x, dtype=np.float64).ravel()
    return float(np.mean(x)), max(float(np.std(x)), 1e-12)


def laplace_log_likelihood(x: np.ndarray, mu: float, b: float) -> float:
    """Mean log-density of ``x`` under Laplace(mu, b)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    return float(np.mean(-math.log(2.0 * b) - np.abs(x - mu) / b))


def gaussian_log_likelihood(x: np.ndarray, mu: float, sigma: float) -> float:
    """Mean log-density of ``x`` under N(mu, sigma²)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    return float(np.mean(-0.5 * math.log(2.0 * math.pi * sigma**2) - (x - mu) ** 2 / (2.0 * sigma**2)))


def _largest_layer(model: nn.Module) -> str:
    layers = weight_layers(model)
    if not layers:
        raise ConfigError(f"{type(model).__name__} has no convolution-like layer with a 4-D weight")
    return max(layers, key=lambda item: item[1].weight.numel())[0]


def weight_distribution(model: nn.Module, layer: str | None = None) -> dict[str, Any]:
    """Weights of one layer (default: the largest filter bank) with both fits and their mean log-likelihoods.

    Returns a dict: ``layer``, ``kind`` (module class), ``weights`` (1-D numpy array), ``laplace`` (mu, b),
    ``gaussian`` (mu, sigma), ``laplace_ll``, ``gaussian_ll`` and ``better`` ("laplace" or "gaussian").
    """
    name = layer or _largest_layer(model)
    module = dict(model.named_modules()).get(name)
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise ConfigError(f"{type(model).__name__} has no layer {name!r} with a weight; try one of "
                         f"{', '.join(n for n, _ in weight_layers(model)[:6])}")
    x = weight.detach().float().cpu().numpy().ravel().astype(np.float64)
    laplace, gaussian = fit_laplace(x), fit_gaussian(x)
    laplace_ll, gaussian_ll = laplace_log_likelihood(x, *laplace), gaussian_log_likelihood(x, *gaussian)
    return {"layer": name, "kind": type(module).__name__, "weights": x, "laplace": laplace, "gaussian": gaussian,
            "laplace_ll": laplace_ll, "gaussian_ll": gaussian_ll,
            "better": "laplace" if laplace_ll > gaussian_ll else "gaussian"}


def plot_weights(sources: ModelSources, *, layer: str | None = None, bins: int = 120) -> Figure:
    """Histogram of one layer's weights per model with the fitted Laplace and Gaussian densities.

    ``layer`` defaults to the largest filter bank of the first model (the same name is used for the others when
    they have it, so CNN and AdderNet twins are compared layer for layer). The legend gives each density's
    parameters and mean log-likelihood; the higher one fits better.
    """
    resolved = resolve_models(sources)
    chosen = layer or _largest_layer(resolved[0][1])
    fig = Figure(figsize=(5.4 * len(resolved), 4.2), layout="constrained")
    axes = fig.subplots(1, len(resolved), squeeze=False)[0]
    for ax, (label, model, _) in zip(axes, resolved):
        own = {name for name, _ in weight_layers(model)}
        dist = weight_distribution(model, chosen if (chosen in own or layer) else _largest_layer(model))
        x = dist["weights"]
        lo, hi = np.percentile(x, [0.1, 99.9]) if x.size > 1000 else (x.min(), x.max())
        span = hi - lo if hi > lo else 1.0
        lo, hi = lo - 0.05 * span, hi + 0.05 * span
        ax.hist(x, bins=bins, range=(lo, hi), density=True, color="0.75", edgecolor="0.6", linewidth=0.3,
                label=f"weights (n={x.size:,})")
        grid = np.linspace(lo, hi, 400)
        (mu_l, b), (mu_g, sigma) = dist["laplace"], dist["gaussian"]
        ax.plot(grid, np.exp(-np.abs(grid - mu_l) / b) / (2 * b), color="tab:red", lw=1.6,
                label=f"Laplace μ={mu_l:.3g}, b={b:.3g}: log-lik {dist['laplace_ll']:.3f}")
        ax.plot(grid, np.exp(-((grid - mu_g) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi)),
                color="tab:blue", lw=1.6, ls="--",
                label=f"Gauss μ={mu_g:.3g}, σ={sigma:.3g}: log-lik {dist['gaussian_ll']:.3f}")
        ax.set_xlim(lo, hi)
        ax.set_xlabel(f"weight value ({dist['layer']}, {dist['kind']})")
        ax.set_ylabel("density")
        ax.set_title(f"{label}: {'Laplace' if dist['better'] == 'laplace' else 'Gauss'} fits better")
        ax.legend(loc="upper left", fontsize="x-small", title="mean log-likelihood per weight",
                  title_fontsize="x-small")
    fig.suptitle("Weight distributions with maximum-likelihood fits")
    return fig


# ----------------------------------------------------------------------------------------------------------------
# learning curves

# panel name -> (title, y label, ((metrics column, line style, series label), ...))
CURVE_PANELS: dict[str, tuple[str, str, tuple[tuple[str, str, str], ...]]] = {
    "loss": ("Loss", "cross-entropy", (("train_loss", "-", "train"), ("val_loss", "--", "val"))),
    "accuracy": ("Accuracy", "top-1 %", (("train_top1", "-", "train"), ("val_top1", "--", "val"))),
    "lr": ("Learning rate", "learning rate", (("lr", "-", "lr"),)),
    "lambda": ("VanillaNet λ (deep training)", "λ", (("act_learn", "-", "λ"),)),
    "train_loss": ("Training loss", "cross-entropy", (("train_loss", "-", "train"),)),
    "val_top1": ("Validation accuracy", "top-1 %", (("val_top1", "-", "val"),)),
}


def _run_label(run_dir: Path) -> str:
    return run_dir.name if run_dir.is_dir() else run_dir.parent.name


def plot_curves(
    runs: Sequence[PathLike] | Mapping[str, PathLike],
    *,
    panels: Sequence[str] | None = None,
    styles: Mapping[str, Mapping[str, Any]] | None = None,
    log_loss: bool = False,
    title: str | None = None,
) -> Figure:
    """Learning curves of run folders: loss, accuracy, learning rate and (VanillaNet) λ per epoch.

    Args:
        runs: run folders (labelled by folder name) or a mapping ``label -> run folder``.
        panels: names from :data:`CURVE_PANELS`; default loss, accuracy, lr, plus lambda when a run logged it.
        styles: optional ``label -> matplotlib line keywords`` (colour, line style) per run.
        log_loss: logarithmic y axis for loss panels.
    """
    items = list(runs.items()) if isinstance(runs, Mapping) else [(_run_label(Path(r)), r) for r in runs]
    if not items:
        raise ConfigError("no run folder given")
    histories = [(label, read_metrics(path)) for label, path in items]
    if panels is None:
        panels = ["loss", "accuracy", "lr"]
        if any("act_learn" in row for _, rows in histories for row in rows):
            panels.append("lambda")
    unknown = [p for p in panels if p not in CURVE_PANELS]
    if unknown:
        raise ConfigError(f"unknown curve panel(s) {unknown}; choose from {', '.join(CURVE_PANELS)}")
    colours = [f"C{i % 10}" for i in range(len(histories))]
    fig = Figure(figsize=(4.6 * len(panels), 3.9), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        panel_title, ylabel, series = CURVE_PANELS[panel]
        for (label, rows), colour in zip(histories, colours):
            style = {"color": colour, **((styles or {}).get(label, {}))}
            for key, linestyle, series_label in series:
                points = [(row["epoch"], row[key]) for row in rows if key in row and "epoch" in row]
                if not points:
                    continue
                epochs, values = zip(*points)
                name = label if len(series) == 1 else f"{label} ({series_label})"
                ax.plot(epochs, values, **{"linestyle": linestyle, **style}, marker="o" if len(points) < 25 else None,
                        markersize=3, lw=1.4, label=name)
        ax.set_title(panel_title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        if log_loss and "loss" in panel:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small", loc="best")
    if title:
        fig.suptitle(title)
    return fig
