"""Optimisation helpers: AdderNet's adaptive learning rate."""

from .alr import ALR_MODES, AdaptiveLR, adder_weights

__all__ = ["ALR_MODES", "AdaptiveLR", "adder_weights"]
