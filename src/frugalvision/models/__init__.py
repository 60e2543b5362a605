"""Model zoo. Importing a family module registers its models."""

from . import adaptive, lenet, resnet, vanillanet, vgg
from ._checkpoint import CheckpointError, read_state_dict, register_converter
from ._factory import create_model, load_checkpoint, load_model
from ._registry import is_model, list_models, model_entrypoint, register_model
from .adderize import adderize

__all__ = [
    "CheckpointError",
    "adaptive",
    "adderize",
    "create_model",
    "is_model",
    "lenet",
    "list_models",
    "load_checkpoint",
    "load_model",
    "model_entrypoint",
    "read_state_dict",
    "register_converter",
    "register_model",
    "resnet",
    "vanillanet",
    "vgg",
]
