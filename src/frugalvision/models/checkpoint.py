"""Reading and writing model weights safely.

Formats read: frugalvision ``.safetensors`` files (weights + JSON metadata naming the model), run folders, and
``torch.save`` files (zip or legacy pre-1.6 pickles) through ``torch.load(weights_only=True)``, whose restricted
unpickler builds only tensors and containers: no arbitrary code runs. Nested checkpoints (``model``, ``model_ema``,
``state_dict``) and ``nn.DataParallel`` prefixes (``module.``) are unwrapped. Key conversions of official
checkpoints are each model's ``checkpoint_filter`` (see :mod:`.registry`).

Run folders hold the model as :data:`~frugalvision.run_dir.MODEL_FILE` (see :class:`~frugalvision.run_dir.RunDir`);
every file is written through :func:`~frugalvision.run_dir.atomic_write`.

Checkpoints of other kinds plug in here: :func:`register_checkpoint_loader` maps a key of the stored config (e.g.
``"quantized"``, registered by :mod:`frugalvision.quant` when it is imported) to the function that rebuilds such a
model, so that :func:`~frugalvision.models.load_model` serves every kind without the model zoo importing the
packages above it. :func:`check_state_dict_fits` and :func:`restore_data_config` are the checks every loader shares.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor, nn

from ..data import DataConfig
from ..errors import CheckpointError, ConfigError, one_line
from ..extensions import declared_checkpoint_loaders
from ..run_dir import EMA_MODEL_FILE, MODEL_FILE, RunDir, atomic_write

__all__ = [
    "MODEL_FILE",
    "CheckpointError",
    "check_state_dict_fits",
    "checkpoint_loader",
    "model_metadata",
    "read_checkpoint_config",
    "read_state_dict",
    "register_checkpoint_loader",
    "resolve_checkpoint_path",
    "restore_data_config",
    "save_model",
    "save_model_file",
]

_METADATA_KEY = "frugalvision"
_NESTED_KEYS = ("model", "state_dict", "model_state_dict", "net")

# config key -> loader(path, config) for checkpoints that are not a plain registered model (see the module docstring)
_CHECKPOINT_LOADERS: dict[str, Callable[[str | os.PathLike, dict[str, Any]], nn.Module]] = {}


def register_checkpoint_loader(key: str, loader: Callable[[str | os.PathLike, dict[str, Any]], nn.Module]) -> None:
    """Let :func:`~frugalvision.models.load_model` hand a checkpoint whose config holds ``key`` to
    ``loader(path, config)``. Registering the same key again replaces the loader (module reloads)."""
    _CHECKPOINT_LOADERS[key] = loader


def checkpoint_loader(config: Mapping[str, Any]) -> Callable[[str | os.PathLike, dict[str, Any]], nn.Module] | None:
    """The registered loader for a checkpoint config, or None for a plain model. A key whose loader is declared
    (:mod:`frugalvision.extensions`) but not registered yet has its module imported first."""
    for key, module in declared_checkpoint_loaders().items():
        if key in config and key not in _CHECKPOINT_LOADERS:
            importlib.import_module(module)  # registers the loader (e.g. frugalvision.quant.serialize)
    return next((loader for key, loader in _CHECKPOINT_LOADERS.items() if key in config), None)


def check_state_dict_fits(
    state: Mapping[str, Tensor], expected: Mapping[str, Tensor], what: str, *, check_dtype: bool = False
) -> None:
    """Raise a one-line :class:`CheckpointError` unless ``state`` has exactly the keys of ``expected`` with the same
    shapes (and dtypes when ``check_dtype``). ``what`` opens the message, e.g. ``"checkpoint x.pth does not fit
    lenet5"`` names file and model."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise CheckpointError(f"{what}: " + "; ".join(parts))
    for key, tensor in state.items():
        want = expected[key]
        if tensor.shape != want.shape or (check_dtype and tensor.dtype != want.dtype):
            found = f"{tensor.dtype} {tuple(tensor.shape)}" if check_dtype else f"shape {tuple(tensor.shape)}"
            wanted = f"{want.dtype} {tuple(want.shape)}" if check_dtype else f"{tuple(want.shape)}"
            raise CheckpointError(f"{what}: {key} has {found}, model expects {wanted}")


def restore_data_config(model: nn.Module, config: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Set ``model.data_config`` from a checkpoint config's ``data_config`` entry (the preprocessing the model was
    trained with), if it has one."""
    if config.get("data_config") is None:
        return
    try:
        model.data_config = DataConfig.from_dict(config["data_config"])
    except ConfigError as error:
        raise CheckpointError(f"corrupt checkpoint {path}: its data config is invalid: {error}") from None


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        path = RunDir(path).model_file
        if not path.is_file():
            raise CheckpointError(f"run folder {path.parent} has no {MODEL_FILE}")
    elif not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def save_model_file(path: str | os.PathLike, state_dict: Mapping[str, Tensor], config: Mapping[str, Any]) -> None:
    """Write weights as safetensors with ``config`` (JSON) in the metadata, atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    metadata = {_METADATA_KEY: json.dumps(dict(config), sort_keys=True)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def model_metadata(model: nn.Module) -> dict[str, Any]:
    """What a checkpoint stores next to the weights so that :func:`~frugalvision.models.load_model` can rebuild the
    model: its registered name and options (``frugalvision_cfg``) and its preprocessing (``data_config``)."""
    data_config = getattr(model, "data_config", None)
    return {**getattr(model, "frugalvision_cfg", {}), **({"data_config": data_config.to_dict()} if data_config else {})}


def save_model(path: str | os.PathLike, model: nn.Module, **extra: Any) -> None:
    """Save ``model`` (weights and :func:`model_metadata`, plus ``extra`` metadata entries), atomically."""
    save_model_file(path, model.state_dict(), {**model_metadata(model), **extra})


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """The frugalvision config stored in a safetensors checkpoint, or None for other files."""
    path = resolve_checkpoint_path(path)
    if path.suffix != ".safetensors":
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"corrupt checkpoint {path}: {error}") from None
    if _METADATA_KEY not in metadata:
        return None
    try:
        return json.loads(metadata[_METADATA_KEY])
    except json.JSONDecodeError:
        raise CheckpointError(f"corrupt checkpoint {path}: unreadable frugalvision metadata") from None


def _unwrap(obj: Any, path: Path, use_ema: bool) -> dict[str, Tensor]:
    if use_ema:
        if isinstance(obj, Mapping) and isinstance(obj.get("model_ema"), Mapping):
            return _unwrap(obj["model_ema"], path, False)
        raise CheckpointError(f"checkpoint {path} has no model_ema entry")
    if isinstance(obj, Mapping):
        for key in _NESTED_KEYS:
            if isinstance(obj.get(key), Mapping):
                return _unwrap(obj[key], path, False)
        if isinstance(obj.get("model_ema"), Mapping):  # a file that holds only the EMA weights
            return _unwrap(obj["model_ema"], path, False)
        tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
        if tensors:
            return tensors
    raise CheckpointError(f"checkpoint {path} holds no state dict (found {type(obj).__name__})")


def read_state_dict(path: str | os.PathLike, *, use_ema: bool = False) -> dict[str, Tensor]:
    """Tensors of a checkpoint file or run folder on the CPU, without ``module.`` prefixes.

    Args:
        use_ema: prefer the ``model_ema`` entry of nested checkpoints.
    """
    path = resolve_checkpoint_path(path)
    if path.suffix == ".safetensors":
        if use_ema:
            raise CheckpointError(f"{path} holds one set of weights; a run's EMA weights are in {EMA_MODEL_FILE}")
        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"corrupt checkpoint {path}: {error}") from None
    else:
        try:
            # Official VanillaNet training checkpoints also store their argparse.Namespace of options: allow that
            # one plain-data class, nothing else.
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:  # torch's message advises weights_only=False: unsafe, never repeated
            found = re.search(r"GLOBAL (\S+)", str(error))
            if found:
                raise CheckpointError(f"cannot read checkpoint {path} safely: it holds Python objects "
                                      f"({found.group(1)}) and frugalvision reads only tensors and plain "
                                      "containers") from None
            raise CheckpointError(f"{path} is not a valid checkpoint: neither a safetensors file nor a torch.save "
                                  "file of tensors and plain containers") from None
        except Exception as error:  # the unpickler raises many types; all mean the same to the user
            raise CheckpointError(f"{path} is not a valid checkpoint: {one_line(error, limit=200)}") from None
        state = _unwrap(obj, path, use_ema)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state
