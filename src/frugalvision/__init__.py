"""frugalvision: frugal vision networks (AdderNet, adaptive convolutional kernels, VanillaNet) in PyTorch."""

from . import layers, models, ops
from .analysis.counting import count_ops
from .models import adderize, create_model, list_models, load_model
from .models._reparam import reparameterize_model

__version__ = "0.1.0"

__all__ = ["__version__", "adderize", "count_ops", "create_model", "layers", "list_models", "load_model", "models",
           "ops", "reparameterize_model"]
