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
packages above it. :func:`check_state_dict_fits` and :func:`restore_data_config` are the checks every loader shares;
:func:`check_layer_kinds` refuses weights of another layer kind (adder weights in a CNN twin, ...) before them.
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
from ..layers import AdaptiveConv2d, Adder2d, BinaryConv2d
from ..run_dir import EMA_MODEL_FILE, MODEL_FILE, RunDir, atomic_write
from .registry import is_model, model_option_defaults

__all__ = [
    "KIND_OPTIONS",
    "MODEL_FILE",
    "CheckpointError",
    "check_layer_kinds",
    "check_state_dict_fits",
    "checkpoint_loader",
    "layer_kind",
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


# ---- layer kinds ---------------------------------------------------------------------------------------------
# A conv, binary or frugalvision adder layer stores one ``weight`` of the same shape, so the numbers alone do not say
# which kind of layer they were trained for (loaded into the wrong kind they compute garbage, silently). What does
# say it: a frugalvision file's stored config (``conv_type``, ...); key names: the official AdderNet release calls an
# adder weight ``adder`` (Adder2d calls it ``weight``), an adaptive layer has a ``kernel_bias``; and the statistics
# of the BatchNorm after an adder layer, whose input -sum |x - w| is never positive.
KIND_OPTIONS = ("conv_type", "stem_type")  # model options that choose the kind of layers (checked between files)
_KIND_LEAVES = {"adder": "adder", "kernel_bias": "adaptive"}  # state-dict leaf name -> the layer kind it reveals


def layer_kind(module: nn.Module) -> str | None:
    """``"adder"``, ``"binary"``, ``"adaptive"`` or ``"conv"`` (a ``conv_type``) for a weight layer, else None."""
    if isinstance(module, Adder2d):
        return "adder"
    if isinstance(module, BinaryConv2d):  # before nn.Conv2d: a subclass of it
        return "binary"
    if isinstance(module, AdaptiveConv2d):
        return "adaptive"
    return "conv" if isinstance(module, nn.Conv2d) else None


def _flag(option: str, value: Any) -> str:
    """The command-line spelling of ``option=value``."""
    text = value if isinstance(value, str) else json.dumps(value)
    return f"--conv-type {text}" if option == "conv_type" else f"--model-option {option}={text}"


def _option_hint(option: str, *values: Any) -> str:
    """How to ask for ``option=value`` (one of ``values``), in Python and on the command line."""
    python = " or ".join(f"{option}={value!r}" for value in values)
    return f"build it with {python} ({' / '.join(_flag(option, value) for value in values)})"


def _kind_hint(model: nn.Module, *kinds: str) -> str:
    """What builds ``model`` with layers of (one of) ``kinds``: the option of its registered name that chooses
    them."""
    name = getattr(model, "frugalvision_cfg", {}).get("model")
    defaults = model_option_defaults(name) if name and is_model(name) else {}
    option = next((o for o in KIND_OPTIONS if o in defaults), None)
    if option is None:
        return f"load it into a model with {' or '.join(kinds)} layers"
    return _option_hint(option, *kinds)


def check_layer_kinds(state: Mapping[str, Tensor], model: nn.Module, what: str,
                      config: Mapping[str, Any] | None = None) -> None:
    """Raise a one-line :class:`CheckpointError` when a checkpoint holds weights of another layer kind than
    ``model``'s, e.g. the official AdderNet ResNet-20 loaded into its CNN twin. Call it on the state dict as read
    (official key names, before a model's ``checkpoint_filter`` renames them).

    Evidence used: ``config``, a frugalvision file's stored config (its registered name and its :data:`KIND_OPTIONS`
    and ``deploy`` must match the model's; a train-mode file may load into a ``deploy`` model, which fuses it), then
    per layer the key names that reveal a kind (:data:`_KIND_LEAVES`), then the running means of the BatchNorms fed
    by the model's adder layers, which adder weights never make positive. Adder weights in a conv or binary twin with
    frugalvision's key names and no stored config leave no such trace and load.
    ``what`` opens the message and names file and model (see :func:`check_state_dict_fits`).
    """
    if config is not None:
        _check_stored_config(config, model, what)
    for module_name, module in model.named_modules():
        kind = layer_kind(module)
        if kind is None:
            continue
        prefix = f"{module_name}." if module_name else ""
        found = next(((key, k) for leaf, k in _KIND_LEAVES.items() if (key := prefix + leaf) in state), None)
        if found is None and kind == "adaptive" and prefix + "weight" in state:
            found = (prefix + "weight", "conv")  # a weight without the adaptive layer's kernel_bias
        if found is not None and found[1] != kind:
            key, found_kind = found
            raise CheckpointError(f"{what}: it holds {found_kind} layers (e.g. {key}) where the model has {kind} "
                                  f"layers; {_kind_hint(model, found_kind)}")
    _check_adder_norm_statistics(state, model, what)


def _norms_after_adder_layers(model: nn.Module) -> dict[str, str]:
    """``{norm name: adder layer name}`` for each BatchNorm whose input is the output of a bias-free adder layer,
    found by one forward on the meta device (no numbers computed); empty when the model has no such layer or no
    known input size."""
    adder_names = {m: n for n, m in model.named_modules() if isinstance(m, Adder2d) and m.bias is None}
    size = getattr(getattr(model, "data_config", None), "input_size", None) or getattr(model, "default_input_size",
                                                                                        None)
    if not adder_names or size is None:
        return {}
    produced: dict[int, tuple[str, Tensor]] = {}  # id(output) -> (adder layer, output kept alive so ids stay unique)
    pairs: dict[str, str] = {}

    def after_adder(module: nn.Module, inputs: Any, output: Tensor) -> None:
        produced[id(output)] = (adder_names[module], output)

    def before_norm(name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            if inputs and id(inputs[0]) in produced:
                pairs[name] = produced[id(inputs[0])][0]
        return hook

    handles = [m.register_forward_hook(after_adder) for m in adder_names]
    handles += [m.register_forward_pre_hook(before_norm(n)) for n, m in model.named_modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    meta = {k: torch.empty_like(v, device="meta") for k, v in [*model.named_parameters(), *model.named_buffers()]}
    try:
        with torch.no_grad():
            torch.func.functional_call(model, meta, (torch.empty(2, *size, device="meta"),), strict=False)
    except Exception:  # a model that cannot run on the meta device: no evidence from it, the other checks stand
        return {}
    finally:
        for handle in handles:
            handle.remove()
    return pairs


def _check_adder_norm_statistics(state: Mapping[str, Tensor], model: nn.Module, what: str) -> None:
    """An adder layer without bias outputs ``-sum |x - w| <= 0`` (AdderNet Eq. 2), so the running mean of a
    BatchNorm fed by it never turns positive: a positive one proves weights trained in a conv or binary layer."""
    for norm, layer in _norms_after_adder_layers(model).items():
        mean = state.get(f"{norm}.running_mean")
        if mean is not None and mean.is_floating_point() and bool((mean > 0).any()):
            raise CheckpointError(
                f"{what}: its weights were not trained as adder layers ({norm}.running_mean, fed by adder layer "
                f"{layer}, is positive up to {float(mean.max()):.3g}; an adder layer outputs -sum |x - w| <= 0); "
                f"{_kind_hint(model, 'conv', 'binary')}"
            )


def _check_stored_config(config: Mapping[str, Any], model: nn.Module, what: str) -> None:
    special = next((key for key in _CHECKPOINT_LOADERS if key in config), None)
    if special is not None:
        raise CheckpointError(f"{what}: it holds a {special} model, which rebuilds itself: load it with "
                              "frugalvision.load_model (on the command line, without --model)")
    model_cfg = getattr(model, "frugalvision_cfg", None) or {}
    name, stored_name = model_cfg.get("model"), config.get("model")
    if name is None or stored_name is None:
        return
    if stored_name != name:
        raise CheckpointError(f"{what}: it holds a {stored_name} model; build {stored_name} (--model {stored_name}) "
                              "or load it with frugalvision.load_model")
    defaults = model_option_defaults(name) if is_model(name) else {}
    stored_kwargs, kwargs = config.get("kwargs") or {}, model_cfg.get("kwargs") or {}
    for option in KIND_OPTIONS:
        stored, wanted = stored_kwargs.get(option, defaults.get(option)), kwargs.get(option, defaults.get(option))
        if stored != wanted:
            raise CheckpointError(f"{what}: it holds a {option}={stored!r} model, this one has {option}={wanted!r}; "
                                  f"{_option_hint(option, stored)}")
    if stored_kwargs.get("deploy") and not getattr(model, "deploy", False):
        raise CheckpointError(f"{what}: it holds the fused (deploy) form; {_option_hint('deploy', True)}")


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
