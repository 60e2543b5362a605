"""Kernel selection for the frugalvision ops.

Each op has an ordered list of backends. A backend says, for given tensors, either ``None`` (it can run them) or a
short reason why not. ``select`` returns the first backend that accepts, so the plain-PyTorch ``torch`` backend, which
accepts everything, is always the last resort. ``FRUGALVISION_BACKEND`` (``auto`` or a backend name) or
:func:`use_backend` force one backend; a forced backend that cannot run the tensors raises with its reason.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from torch import Tensor

from ..errors import ConfigError

__all__ = ["Backend", "available_backends", "register_backend", "register_deferred", "select", "use_backend"]

_ENV_VAR = "FRUGALVISION_BACKEND"


@dataclass(frozen=True)
class Backend:
    """A set of kernels for one op.

    Attributes:
        name: short name (``torch``, ``numba``, ``triton``).
        kernels: mapping from kernel role (``forward``, ``grad_input``, ...) to the function implementing it.
        rejects: ``rejects(*tensors)`` returns ``None`` when the backend can run these tensors, else the reason.
        priority: higher runs first.
    """

    name: str
    kernels: dict[str, Callable[..., Tensor]]
    rejects: Callable[..., str | None] = field(default=lambda *tensors: None)
    priority: int = 0


_REGISTRY: dict[str, list[Backend]] = {}
_DEFERRED: dict[str, list[Callable[[], None]]] = {}
_forced: list[str] = []


def register_backend(op: str, backend: Backend) -> None:
    """Add (or replace, by name) a backend of ``op``."""
    backends = [b for b in _REGISTRY.get(op, []) if b.name != backend.name]
    backends.append(backend)
    backends.sort(key=lambda b: -b.priority)
    _REGISTRY[op] = backends


def register_deferred(op: str, registrar: Callable[[], None]) -> None:
    """Run ``registrar`` (which calls :func:`register_backend`) the first time ``op``'s backends are looked up: a
    backend whose kernels live in a slow-to-import module (numba: about half a second) costs nothing until used."""
    _DEFERRED.setdefault(op, []).append(registrar)


def _backends(op: str) -> list[Backend]:
    """``op``'s backends, best first, after running its deferred registrars."""
    for registrar in _DEFERRED.pop(op, []):
        registrar()
    return _REGISTRY.get(op, [])


def available_backends(op: str) -> list[str]:
    return [b.name for b in _backends(op)]


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force one backend inside the block (``auto`` restores automatic selection)."""
    _forced.append(name)
    try:
        yield
    finally:
        _forced.pop()


def select(op: str, *tensors: Tensor) -> Backend:
    """The backend that runs ``op`` on these tensors."""
    backends = _backends(op)
    if not backends:
        raise RuntimeError(f"no backend registered for {op}")
    forced = _forced[-1] if _forced else os.environ.get(_ENV_VAR, "auto")
    if forced != "auto":
        for backend in backends:
            if backend.name == forced:
                reason = backend.rejects(*tensors)
                if reason is not None:
                    raise ConfigError(f"{op}: backend '{forced}' cannot run these inputs: {reason}")
                return backend
        raise ConfigError(f"{op}: unknown backend '{forced}' (available: {', '.join(available_backends(op))})")
    for backend in backends:
        if backend.rejects(*tensors) is None:
            return backend
    raise RuntimeError(f"{op}: no backend accepts these inputs")
