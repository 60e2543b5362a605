"""Model zoo. Importing a family module registers its models."""

from . import adaptive, lenet, resnet, vanillanet, vgg
from .adderize import adderize
from .checkpoint import (
    MODEL_FILE,
    CheckpointError,
    model_metadata,
    read_checkpoint_config,
    read_state_dict,
    register_checkpoint_loader,
    save_model,
    save_model_file,
)
from .factory import create_model, load_checkpoint, load_model
from .registry import is_model, list_models, model_entry, model_entrypoint, model_train_defaults, register_model

__all__ = [
    "MODEL_FILE",
    "CheckpointError",
    "adaptive",
    "adderize",
    "create_model",
    "is_model",
    "lenet",
    "list_models",
    "load_checkpoint",
    "load_model",
    "model_entry",
    "model_entrypoint",
    "model_metadata",
    "model_train_defaults",
    "read_checkpoint_config",
    "read_state_dict",
    "register_checkpoint_loader",
    "register_model",
    "resnet",
    "save_model",
    "save_model_file",
    "vanillanet",
    "vgg",
]
