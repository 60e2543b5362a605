"""The errors a user can fix: one family, one line each.

Every problem caused by the user's input (an option, a configuration, a data folder, a checkpoint file, a tensor of
the wrong shape or dtype handed to an op) raises a subclass of :class:`FrugalVisionError`. The command line prints
such an error as one line and exits with code 2; any other exception is a bug in frugalvision and is reported as one
(exit code 1, the traceback with ``FRUGALVISION_DEBUG=1``). Each class also derives from the built-in exception it
refines (``ValueError``, ``TypeError``, ``OSError``), so ``except ValueError`` in user code keeps working.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ExportError",
    "FrugalVisionError",
    "InputError",
    "InputTypeError",
    "OutputError",
    "RunExistsError",
    "TrainingDivergedError",
    "one_line",
]


class FrugalVisionError(Exception):
    """Base of every error the user can fix; the message is one line that names the problem."""


class ConfigError(FrugalVisionError, ValueError):
    """A bad option: unknown name, value out of range, an impossible combination (training config, CLI flag)."""


class DataError(FrugalVisionError, ValueError):
    """A dataset is missing, malformed or asked for in a way it cannot serve."""


class CheckpointError(FrugalVisionError, ValueError):
    """A checkpoint is missing, unreadable, unsafe or does not fit the model."""


class ExportError(FrugalVisionError, ValueError):
    """A model cannot be exported, or the exported file does not compute what the model computes."""


class RunExistsError(ConfigError):
    """The run folder already holds a run and neither resume nor overwrite was asked for."""


class InputError(FrugalVisionError, ValueError):
    """A tensor or module handed to a frugalvision function has the wrong shape or structure."""


class InputTypeError(FrugalVisionError, TypeError):
    """A tensor handed to a frugalvision function has the wrong dtype."""


class OutputError(FrugalVisionError, OSError):
    """A result file cannot be written (missing permission, full disk, a folder in the way)."""


class TrainingDivergedError(FrugalVisionError, ArithmeticError):
    """A training run's loss or weights stopped being finite (usually a learning rate too high); the run stops
    without saving the non-finite state."""


def one_line(error: BaseException, *, limit: int | None = 300, with_type: bool = False) -> str:
    """``error``'s message on one line: runs of whitespace (newlines included) become one space, an empty message
    becomes the exception's type name, and a message longer than ``limit`` characters is cut with ``...``.

    Args:
        limit: the longest text returned (``None``: no limit, for this package's own messages, which are written
            to be read whole).
        with_type: prefix the type name (``"RuntimeError: ..."``), for messages of third-party exceptions that do
            not say what went wrong on their own.
    """
    text = " ".join(str(error).split())
    if with_type or not text:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."
