"""A self-contained HTML report of one training run: summary, figures, cost, metrics and configuration.

The page has no external assets and no scripts: figures are PNGs embedded as ``data:`` URIs and the style sheet
is inline, so it opens offline and can be mailed or attached to an issue as one file.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..run_dir import METRICS_FILE, RunDir, write_text
from .counting import ENERGY_TABLES, human

__all__ = ["build_report", "write_report"]

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2430; margin: 0;
       background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 10px; border-bottom: 1px solid #d8dce3;
       padding-bottom: 4px; }
.sub { color: #5b6575; margin: 0 0 18px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #fff; border: 1px solid #d8dce3; border-radius: 8px; padding: 10px 16px; min-width: 120px; }
.card .v { font-size: 20px; font-weight: 600; } .card .k { color: #5b6575; font-size: 12px; }
table { border-collapse: collapse; background: #fff; font-size: 13px; margin: 6px 0; }
th, td { border: 1px solid #d8dce3; padding: 4px 9px; text-align: right; font-variant-numeric: tabular-nums; }
th { background: #eef0f4; } td.l, th.l { text-align: left; }
figure { background: #fff; border: 1px solid #d8dce3; border-radius: 8px; margin: 12px 0; padding: 10px; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: #5b6575; font-size: 12px; margin-top: 6px; }
.scroll { overflow-x: auto; } code { background: #eef0f4; padding: 1px 4px; border-radius: 3px; }
details summary { cursor: pointer; color: #2b5fb3; margin: 6px 0; } .note { color: #8a5a00; }
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.4g}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if not value.is_integer() else f"{value:.0f}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return str(value)


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    head = "".join(f'<th class="l">{html.escape(c)}</th>' if i < left else f"<th>{html.escape(c)}</th>"
                   for i, c in enumerate(columns))
    body = []
    for row in rows:
        cells = "".join(f'<td class="l">{html.escape(_fmt(v))}</td>' if i < left else f"<td>{html.escape(_fmt(v))}</td>"
                        for i, v in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _figure(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _input_size(model: Any, train_cfg: dict[str, Any]) -> tuple[int, ...] | None:
    from ..data import dataset_info

    if train_cfg.get("dataset") == "fake" and train_cfg.get("fake_input_size"):
        return tuple(train_cfg["fake_input_size"])
    size = getattr(model, "default_input_size", None)
    if size is not None:
        return tuple(size)
    try:
        return tuple(dataset_info(train_cfg.get("dataset", "")).input_size)
    except (KeyError, ValueError):
        return None


def build_report(run_dir: str | os.PathLike, *, title: str | None = None, dpi: int = 100) -> str:
    """The HTML text of the report of ``run_dir`` (a frugalvision run folder with ``model.safetensors``)."""
    from ..models import load_model
    from ..version import __version__
    from .counting import count_ops
    from .figures import figure_png, first_layer, plot_curves, plot_filters, plot_weights

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder not found: {run_dir}")
    run = RunDir(run_dir)
    history = run.read_metrics()
    config = run.read_config()
    train_cfg: dict[str, Any] = config.get("train", {})
    model_cfg: dict[str, Any] = config.get("model", {})
    model = load_model(run_dir)
    name = title or run_dir.name
    last = history[-1] if history else {}
    notes: list[str] = []

    # -- summary cards
    cards = [("model", model_cfg.get("model", type(model).__name__))]
    conv_type = (model_cfg.get("kwargs") or {}).get("conv_type")
    if conv_type:
        cards.append(("conv type", conv_type))
    cards += [("dataset", train_cfg.get("dataset", "?")),
              ("epochs", f"{len(history)}/{train_cfg.get('epochs', len(history))}")]
    if "val_top1" in last:
        cards.append(("final val top-1 %", f"{last['val_top1']:.2f}"))
        cards.append(("best val top-1 %", f"{max(r['val_top1'] for r in history if 'val_top1' in r):.2f}"))
    if "val_top5" in last:
        cards.append(("final val top-5 %", f"{last['val_top5']:.2f}"))
    seconds = sum(r.get("epoch_seconds", 0.0) for r in history)
    cards.append(("training time", f"{seconds:.0f} s"))
    cards_html = "".join(f'<div class="card"><div class="v">{html.escape(str(v))}</div>'
                         f'<div class="k">{html.escape(k)}</div></div>' for k, v in cards)

    # -- figures (each optional: a model without filter banks simply has no filter figure)
    figures_html = []
    if history:
        figures_html.append(_figure(figure_png(plot_curves({name: run_dir}), dpi=dpi),
                                    f"Learning curves ({METRICS_FILE}): loss, accuracy, learning rate"
                                    + (", VanillaNet λ" if any("act_learn" in r for r in history) else "")))
    try:
        figures_html.append(_figure(figure_png(plot_weights({name: model}), dpi=dpi),
                                    "Weights of the largest layer with maximum-likelihood Laplace and Gaussian fits"))
        layer_name, _ = first_layer(model)
        figures_html.append(_figure(figure_png(plot_filters({name: model}), dpi=dpi),
                                    f"First-layer filters ({layer_name}), at most 16"))
    except ValueError as error:
        notes.append(f"weight figures skipped: {error}")

    # -- cost
    cost_html = ""
    input_size = _input_size(model, train_cfg)
    if input_size is not None:
        costs = count_ops(model, input_size)
        cost_html = _table(
            ("input", "params", "mul", "add", "xnor", "energy µJ", "latency Mcycles"),
            [(str(tuple(input_size)), human(costs["params"]), human(costs["mul"]), human(costs["add"]),
              human(costs["xnor"]), f"{costs['energy_pj'] / 1e6:.3f}", f"{costs['latency_cycles'] / 1e6:.3f}")],
        )
        layers = costs.get("layers") or []
        if layers:
            keys = [k for k in ("module", "op", "mul", "add", "xnor") if k in layers[0]]
            cost_html += ("<details><summary>per layer</summary>"
                          + _table(keys, [[row.get(k, "") for k in keys] for row in layers], left=2) + "</details>")
        cost_html += ('<p class="sub">Per image, one forward pass, every layer including BatchNorm. '
                      f"{html.escape(ENERGY_TABLES[costs['energy_table']].caption())}</p>")
    else:
        notes.append("cost table skipped: unknown input size")

    # -- metrics and configuration
    columns = list(dict.fromkeys(k for row in history for k in row))
    metrics_html = _table(columns, [[row.get(c, "") for c in columns] for row in history], left=0)
    config_rows = [(k, v) for k, v in sorted(train_cfg.items()) if v is not None]
    model_rows = [("model", model_cfg.get("model", "")), *sorted((model_cfg.get("kwargs") or {}).items())]
    dataset = train_cfg.get("dataset", "mnist5k")
    eval_cmd = f"frugalvision eval --checkpoint {run_dir} --dataset {dataset}"

    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    notes_html = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(name)}: frugalvision run report</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<h1>{html.escape(name)}</h1>
<p class="sub">Run folder <code>{html.escape(str(run_dir))}</code>; report by frugalvision {html.escape(__version__)} on
{stamp}.</p>
<div class="cards">{cards_html}</div>
{notes_html}
<h2>Figures</h2>
{"".join(figures_html)}
<h2>Cost</h2>
{cost_html}
<h2>Metrics per epoch</h2>
{metrics_html}
<h2>Configuration</h2>
<h3>Model</h3>
{_table(("option", "value"), model_rows)}
<h3>Training</h3>
{_table(("option", "value"), config_rows)}
<p class="sub">Evaluate again: <code>{html.escape(eval_cmd)}</code></p>
</main>
</body>
</html>
"""


def write_report(run_dir: str | os.PathLike, output: str | os.PathLike | None = None, **kwargs: Any) -> Path:
    """Write :func:`build_report` to ``output`` (default ``RUN_DIR/report.html``, atomically) and return the path."""
    path = Path(output) if output else RunDir(run_dir).report_file
    write_text(path, build_report(run_dir, **kwargs))
    return path
