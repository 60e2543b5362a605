"""fp32 vs int8 on labelled data: accuracy of both, top-1 agreement and the logits' error."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError

__all__ = ["compare_models"]


@torch.no_grad()
def compare_models(float_model: nn.Module, int_model: nn.Module, data: Iterable[tuple[Tensor, Tensor]],
                   ) -> dict[str, Any]:
    """Run both models on (images, labels) batches (CPU).

    Returns:
        ``num_samples``; ``fp32_top1`` and ``int8_top1`` (%); ``agreement`` (% of images with the same top-1 class);
        ``logit_mse`` (mean squared difference of the logits), ``logit_rel_error`` (``||int8 - fp32|| / ||fp32||``
        over all logits) and ``logit_max_abs_error``.
    """
    was_training = float_model.training
    float_model.eval()
    totals = dict(n=0, fp32=0, int8=0, agree=0, sq=0.0, ref_sq=0.0, max_abs=0.0)
    try:
        for images, labels in data:
            ref = float_model(images).float()
            out = int_model(images).float()
            totals["n"] += labels.numel()
            totals["fp32"] += int((ref.argmax(1) == labels).sum())
            totals["int8"] += int((out.argmax(1) == labels).sum())
            totals["agree"] += int((ref.argmax(1) == out.argmax(1)).sum())
            totals["sq"] += float(((out - ref).double() ** 2).sum())
            totals["ref_sq"] += float((ref.double() ** 2).sum())
            totals["max_abs"] = max(totals["max_abs"], float((out - ref).abs().max()))
    finally:
        float_model.train(was_training)
    n = totals["n"]
    if n == 0:
        raise InputError("compare_models: the data yielded no (images, labels) batch")
    return {
        "num_samples": n,
        "fp32_top1": 100.0 * totals["fp32"] / n,
        "int8_top1": 100.0 * totals["int8"] / n,
        "agreement": 100.0 * totals["agree"] / n,
        "logit_mse": totals["sq"] / (n * ref.shape[1]),
        "logit_rel_error": (totals["sq"] / max(totals["ref_sq"], 1e-30)) ** 0.5,
        "logit_max_abs_error": totals["max_abs"],
    }
