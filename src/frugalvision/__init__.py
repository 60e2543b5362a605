"""frugalvision: frugal vision networks (AdderNet, adaptive convolutional kernels, VanillaNet) in PyTorch."""

import os

# Two OpenMP thread pools share the cores here: torch's and the one behind the numba kernels. With the default
# active waiting, the idle pool spins while the other works; on a 2-core machine that made a LeNet-5-BN epoch
# 2-3x slower (see README, "Threads"). Passive waiting lets the idle pool sleep. Set before torch is imported so
# that torch's pool follows it too; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import data, errors, layers, models, ops
from .analysis.counting import count_ops
from .inference import predict
from .layers.reparam import reparameterize_model
from .models import adderize, create_model, list_models, load_model
from .quant import quantize  # also registers the integer-model loader behind load_model (quant/serialize.py)
from .version import __version__

__all__ = ["__version__", "adderize", "count_ops", "create_model", "data", "errors", "layers", "list_models",
           "load_model", "models", "ops", "predict", "quantize", "reparameterize_model"]
