"""Run-folder files, all written atomically (a killed run never leaves a half-written file).

    model.safetensors   weights of the model at the end of the last finished epoch, with the model config in the
                        metadata (what ``eval``, ``load_model`` and ``create_model(checkpoint_path=...)`` read)
    last.safetensors    everything ``--resume`` needs, in ONE file so that it is always consistent: model, EMA and
                        optimizer tensors, plus JSON metadata (epoch, config, optimizer groups, scheduler, callbacks,
                        metrics history)
    config.json         the run's configuration
    metrics.csv         one row per finished epoch, rewritten from the history stored in last.safetensors
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor

from ..models.checkpoint import MODEL_FILE, CheckpointError, atomic_write

__all__ = [
    "LAST_FILE",
    "MODEL_FILE",
    "read_state_for_resume",
    "read_training_state",
    "write_json",
    "write_metrics_csv",
    "write_training_state",
]

LAST_FILE = "last.safetensors"
_STATE_KEY = "frugalvision_training_state"


def _split_optimizer_state(state: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """optimizer.state_dict() -> (tensors keyed 'optim.<param>.<name>', JSON-able remainder)."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state["state"].items():
        for name, value in param_state.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{param_id}.{name}"] = value
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    groups = []
    for index, group in enumerate(state["param_groups"]):  # some optimizers (timm's Lamb) keep tensors here
        for name, value in group.items():
            if isinstance(value, Tensor):
                tensors[f"optim_group.{index}.{name}"] = value
        groups.append({k: v for k, v in group.items() if not isinstance(v, Tensor)})
    return tensors, {"param_groups": groups, "scalars": scalars}


def _join_optimizer_state(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    groups = [dict(group) for group in meta["param_groups"]]
    for key, value in tensors.items():
        kind, index, name = key.split(".", 2)
        if kind == "optim_group":
            groups[int(index)][name] = value
        else:
            state.setdefault(int(index), {})[name] = value
    for param_id, values in meta["scalars"].items():
        state.setdefault(int(param_id), {}).update(values)
    return {"state": state, "param_groups": groups}


def write_training_state(
    path: Path,
    *,
    model_state: Mapping[str, Tensor],
    optimizer_state: Mapping[str, Any],
    ema_state: Mapping[str, Tensor] | None,
    metadata: Mapping[str, Any],
) -> None:
    """Write the resumable state as one safetensors file (atomic)."""
    tensors = {f"model.{k}": v for k, v in model_state.items()}
    if ema_state is not None:
        tensors.update({f"ema.{k}": v for k, v in ema_state.items()})
    optim_tensors, optim_meta = _split_optimizer_state(optimizer_state)
    tensors.update(optim_tensors)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {_STATE_KEY: json.dumps({**metadata, "optimizer": optim_meta})}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_training_state(path: Path) -> dict[str, Any]:
    """Inverse of :func:`write_training_state`: model/ema/optimizer states plus the metadata entries."""
    try:
        tensors = load_file(str(path), device="cpu")
        with safe_open(str(path), framework="pt") as f:
            metadata = json.loads((f.metadata() or {})[_STATE_KEY])
    except (SafetensorError, OSError, KeyError, ValueError) as error:
        raise CheckpointError(f"corrupt training state {path}: {error}") from None
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    ema = {k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")}
    optim = {k: v for k, v in tensors.items() if k.startswith(("optim.", "optim_group."))}
    optimizer_state = _join_optimizer_state(optim, metadata.pop("optimizer"))
    return {"model": model, "ema": ema or None, "optimizer": optimizer_state, **metadata}


def write_metrics_csv(path: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite ``metrics.csv`` from the full history (atomic)."""
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    atomic_write(path, lambda tmp: Path(tmp).write_text(buffer.getvalue()))


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(value, indent=2, sort_keys=True, default=str)))


def read_state_for_resume(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / LAST_FILE
    return read_training_state(path) if path.is_file() else None

