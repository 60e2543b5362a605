"""The run folder: the one place that names its files, reads them and writes them (atomically).

A run folder written by ``frugalvision train`` holds:

    model.safetensors       weights of the model at the end of the last finished epoch, with the model config in
                            the metadata (what ``eval``, ``load_model`` and ``create_model(checkpoint_path=...)`` read)
    model_ema.safetensors   the EMA weights, when the run keeps an EMA copy
    last.safetensors        everything ``--resume`` needs, in ONE file so that it is always consistent: model, EMA
                            and optimizer tensors, plus JSON metadata (epoch, config, optimizer groups, scheduler,
                            callbacks, metrics history, the distillation teacher's path and SHA-256)
    config.json             the run's configuration (``train``, ``model`` and, for a distilled run, ``teacher``)
    metrics.csv             one row per finished epoch, rewritten from the history stored in last.safetensors
    tensorboard/            TensorBoard event files
    report.html             ``frugalvision report`` (written on request)

Every file goes through :func:`atomic_write`: a killed run never leaves a half-written file. This module sits at the
bottom of the package (it imports only :mod:`frugalvision.errors`), so that models, training, analysis, the command
line and ``tools/`` all read run folders through :class:`RunDir` without importing upwards.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor

from .errors import CheckpointError, OutputError

__all__ = [
    "CONFIG_FILE",
    "EMA_MODEL_FILE",
    "LAST_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "REPORT_FILE",
    "TENSORBOARD_DIR",
    "RunDir",
    "TeacherRecord",
    "atomic_write",
    "new_file_mode",
    "read_training_state",
    "write_text",
    "write_training_state",
]

MODEL_FILE = "model.safetensors"
EMA_MODEL_FILE = "model_ema.safetensors"
LAST_FILE = "last.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
REPORT_FILE = "report.html"
TENSORBOARD_DIR = "tensorboard"

_STATE_KEY = "frugalvision_training_state"


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers see the old file or the new one, never half.
    The file gets the permissions of any newly created file (0666 less the user's umask), not the private 0600 of
    the temporary file it is written as.

    Raises:
        OutputError: the file cannot be written (permission, full disk, a folder in the way); nothing is left behind.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except OSError as error:
        _remove(tmp)
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        _remove(tmp)
        raise


def new_file_mode() -> int:
    """The permissions of a newly created file: 0666 less the process's umask (reading the umask means setting it:
    it is set straight back). Files written through a private temporary file (``tempfile.mkstemp``: 0600) get these
    before the rename."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _remove(tmp: str | None) -> None:
    if tmp is not None and os.path.exists(tmp):
        os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """``path.write_text(text)`` (UTF-8), atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


@dataclass(frozen=True)
class TeacherRecord:
    """The distillation teacher a run was trained from: its checkpoint (file or run folder) and that file's SHA-256.

    Runs written before the path was stored absolute hold it as typed, relative to the working directory of the
    training command; :meth:`RunDir.teacher` resolves such a path against a ``base`` folder."""

    path: Path
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "sha256": self.sha256}


@dataclass(frozen=True)
class RunDir:
    """A run folder (see the module docstring): its file paths, and reading and writing each file."""

    path: Path

    def __init__(self, path: str | os.PathLike) -> None:
        object.__setattr__(self, "path", Path(path))

    def __fspath__(self) -> str:
        return str(self.path)

    # -- file paths

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def ema_model_file(self) -> Path:
        return self.path / EMA_MODEL_FILE

    @property
    def last_file(self) -> Path:
        return self.path / LAST_FILE

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def report_file(self) -> Path:
        return self.path / REPORT_FILE

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / TENSORBOARD_DIR

    # -- config.json

    def read_config(self) -> dict[str, Any]:
        """The stored configuration (``{}`` when the folder has no config file).

        Raises:
            CheckpointError: the file exists but is not a JSON object.
        """
        if not self.config_file.is_file():
            return {}
        try:
            config = json.loads(self.config_file.read_text())
        except (OSError, ValueError) as error:
            raise CheckpointError(f"unreadable {self.config_file}: {error}") from None
        if not isinstance(config, dict):
            raise CheckpointError(f"{self.config_file} does not hold a JSON object")
        return config

    def write_config(self, config: Mapping[str, Any]) -> None:
        write_text(self.config_file, json.dumps(config, indent=2, sort_keys=True, default=str))

    def teacher(self, base: str | os.PathLike | None = None) -> TeacherRecord | None:
        """The distillation teacher recorded in ``config.json`` (``None``: the run has none). A relative path (runs
        written before the path was stored absolute) is resolved against ``base`` (default: the working folder)."""
        record = self.read_config().get("teacher")
        if not record:
            return None
        path = Path(record["path"])
        if not path.is_absolute():
            path = Path(base or Path.cwd()) / path
        return TeacherRecord(path, record["sha256"])

    # -- metrics.csv

    def read_metrics(self) -> list[dict[str, float]]:
        """The rows of ``metrics.csv`` as floats (empty and non-numeric cells are skipped).

        Raises:
            CheckpointError: the folder has no metrics file.
        """
        if not self.metrics_file.is_file():
            raise CheckpointError(f"no {METRICS_FILE} in {self.path}: is it a frugalvision run folder?")
        rows = []
        with self.metrics_file.open(newline="") as f:
            for row in csv.DictReader(f):
                parsed: dict[str, float] = {}
                for key, value in row.items():
                    if key is None or value in (None, ""):
                        continue
                    try:
                        parsed[key] = float(value)
                    except ValueError:
                        continue
                rows.append(parsed)
        return rows

    def finished_epochs(self) -> int:
        """Rows of ``metrics.csv`` (0 without one)."""
        return len(self.read_metrics()) if self.metrics_file.is_file() else 0

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """Rewrite ``metrics.csv`` from the full history (columns in order of first appearance)."""
        columns: list[str] = []
        for row in history:
            columns += [key for key in row if key not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
        write_text(self.metrics_file, buffer.getvalue())

    # -- last.safetensors

    def write_training_state(self, *, model_state: Mapping[str, Tensor], optimizer_state: Mapping[str, Any],
                             ema_state: Mapping[str, Tensor] | None, metadata: Mapping[str, Any]) -> None:
        """Write the resumable state as one safetensors file."""
        write_training_state(self.last_file, model_state=model_state, optimizer_state=optimizer_state,
                             ema_state=ema_state, metadata=metadata)

    def read_training_state(self) -> dict[str, Any] | None:
        """The resumable state (``None``: no finished epoch to resume from); see :func:`read_training_state`."""
        return read_training_state(self.last_file) if self.last_file.is_file() else None


# ----------------------------------------------------------------------------------------------------------------
# The training-state file format (any path; a run folder keeps it as LAST_FILE)


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


def write_training_state(path: str | os.PathLike, *, model_state: Mapping[str, Tensor],
                         optimizer_state: Mapping[str, Any], ema_state: Mapping[str, Tensor] | None,
                         metadata: Mapping[str, Any]) -> None:
    """Write model, EMA and optimizer tensors plus JSON ``metadata`` as one safetensors file (atomic)."""
    tensors = {f"model.{k}": v for k, v in model_state.items()}
    if ema_state is not None:
        tensors.update({f"ema.{k}": v for k, v in ema_state.items()})
    optim_tensors, optim_meta = _split_optimizer_state(optimizer_state)
    tensors.update(optim_tensors)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {_STATE_KEY: json.dumps({**metadata, "optimizer": optim_meta})}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """Inverse of :func:`write_training_state`: ``model``, ``ema`` (or ``None``) and ``optimizer`` states plus the
    metadata entries.

    Raises:
        CheckpointError: the file is not a training state.
    """
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
