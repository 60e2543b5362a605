"""frugalvision: frugal vision networks (AdderNet, adaptive convolutional kernels, VanillaNet) in PyTorch.

The public names below load on first use (PEP 562 module ``__getattr__``): ``import frugalvision`` imports neither
torch nor the kernels, so that the command line starts at once; ``frugalvision.create_model`` and friends import what
they need when first touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import omp_env  # noqa: F401  (first: OMP_WAIT_POLICY=PASSIVE unless set, before torch is imported)
from .extensions import declare_checkpoint_loader
from .version import __version__

# load_model serves integer models through the loader frugalvision.quant registers; it is imported on the first
# integer file (see frugalvision.extensions).
declare_checkpoint_loader("quantized", "frugalvision.quant.serialize")

if TYPE_CHECKING:  # the names __getattr__ serves, for type checkers and the import-graph test
    from . import data, errors, layers, models, ops
    from .analysis.counting import count_ops
    from .inference import predict
    from .layers.reparam import reparameterize_model
    from .models import adderize, create_model, list_models, load_model
    from .quant import quantize

__all__ = ["__version__", "adderize", "count_ops", "create_model", "data", "errors", "layers", "list_models",
           "load_model", "models", "ops", "predict", "quantize", "reparameterize_model"]

# public name -> the module that defines it (relative to this package)
_LAZY_NAMES = {
    "adderize": ".models",
    "count_ops": ".analysis.counting",
    "create_model": ".models",
    "list_models": ".models",
    "load_model": ".models",
    "predict": ".inference",
    "quantize": ".quant",
    "reparameterize_model": ".layers.reparam",
}
_SUBPACKAGES = ("analysis", "bench", "cli", "data", "errors", "export", "inference", "layers", "models", "ops",
                "optim", "quant", "run_dir", "train")


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name], __name__), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'frugalvision' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBPACKAGES})
