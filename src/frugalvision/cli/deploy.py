"""``frugalvision deploy``: fuse a checkpoint into its deploy form; save it and/or export it to ONNX.

Fusion is :func:`frugalvision.reparameterize_model` (VanillaNet: Chen et al., NeurIPS 2023, arXiv 2305.12972,
deploy conversion). The fused output is compared with the original on a seeded random batch, and the ONNX file, when
written, with onnxruntime (optional extra ``frugalvision[export]``). ONNX files use the standard operator set only:
adder layers are written as an exact decomposition (:mod:`frugalvision.export.onnx`), integer models (``quantize``
outputs, nothing to fuse) as their integer graph (:mod:`frugalvision.export.onnx_integer`). Parameters are reported
as ``count`` counts them; a model with nothing to fold is reported as such.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, ExportError
from .options import add_model_arguments, check_output_path

if TYPE_CHECKING:
    import torch

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "run"]

HELP = "fuse a checkpoint for deployment (safetensors and/or ONNX)"
DESCRIPTION = ("Fuse a trained model (fold BatchNorms, merge convs) into its deploy form, check that it computes the "
               "same function, and write it as a frugalvision checkpoint and/or ONNX.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--output", type=Path, help="write the fused model here (.safetensors; not for integer models)")
    p.add_argument("--onnx", type=Path, help="export the fused model (or the integer model of a quantize output) to "
                   "this ONNX file")
    p.add_argument("--opset", type=int, default=17, help="ONNX operator set version")
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                   help="example input size (default: the model's, 3 224 224 for ImageNet models)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest relative error accepted in the checks")
    p.add_argument("--json", action="store_true", help="print one JSON object (parameters, errors, files written)")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..quant import is_quantized
    from .common import load_model_from_args, model_input_size

    if args.output is None and args.onnx is None:
        raise ConfigError("nothing to write: give --output FILE.safetensors and/or --onnx FILE.onnx")
    check_output_path(args.output, "--output", suffixes=(".safetensors",))
    check_output_path(args.onnx, "--onnx", suffixes=(".onnx",))
    model = load_model_from_args(args)
    input_size = model_input_size(model, args.input_size)
    example = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0))
    record: dict[str, Any] = {"checkpoint": str(args.checkpoint)}
    say: Callable[[str], None] = (lambda text: None) if args.json else print
    if is_quantized(model):
        _deploy_integer(args, model, input_size, example, record, say)
    else:
        _deploy_float(args, model, example, record, say)
    if args.json:
        print(json.dumps(record))
    return 0


def _same_state(model: torch.nn.Module, fused: torch.nn.Module) -> bool:
    """Whether fusion changed nothing: the same tensors under the same names."""
    import torch

    before, after = model.state_dict(), fused.state_dict()
    return before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def _deploy_float(args: argparse.Namespace, model: torch.nn.Module, example: torch.Tensor, record: dict[str, Any],
                  say: Callable[[str], None]) -> None:
    import torch

    from ..analysis.counting import parameter_count
    from ..export import export_onnx, relative_error
    from ..layers.reparam import reparameterize_model
    from ..models import save_model

    fused = reparameterize_model(model)
    record.update(params=parameter_count(model), fused_params=parameter_count(fused), fused=False)
    if _same_state(model, fused):
        say(f"nothing to fuse (no BatchNorm or branch of this model folds): {record['params']:,} parameters")
    else:
        with torch.no_grad():
            err = relative_error(fused(example), model(example))
        record.update(fused=True, fused_relative_error=err)
        say(f"fused {record['params']:,} -> {record['fused_params']:,} parameters; max relative error vs "
            f"original {err:.2e}")
        if err > args.tolerance:
            raise ExportError(f"fused model differs from the original (relative error {err:.2e} > "
                              f"{args.tolerance:g})")
    if args.output is not None:
        save_model(args.output, fused)
        record["output"] = str(args.output)
        say(f"wrote {args.output}")
    if args.onnx is not None:
        onnx_err = export_onnx(fused, args.onnx, example, args.opset, tolerance=args.tolerance)
        record.update(onnx=str(args.onnx), onnx_relative_error=onnx_err)
        if onnx_err is None:
            say(f"wrote {args.onnx} (onnxruntime not installed: not verified)")
        else:
            say(f"wrote {args.onnx}; onnxruntime vs PyTorch max relative error {onnx_err:.2e}")


def _deploy_integer(args: argparse.Namespace, model: torch.nn.Module, input_size: tuple[int, int, int],
                    example: torch.Tensor, record: dict[str, Any], say: Callable[[str], None]) -> None:
    """An integer model (a ``quantize`` output) is already in its deploy form: ONNX export only."""
    import torch

    from ..analysis.counting import parameter_count
    from ..export import export_integer_onnx

    if args.output is not None:
        raise ConfigError(f"{args.checkpoint} is an integer model (a quantize output), already in its deploy form: "
                          "--output does not apply; use --onnx")
    record.update(params=parameter_count(model), fused=False)
    say(f"integer model: nothing to fuse; {record['params']:,} parameters")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        export_integer_onnx(model, args.onnx, input_size, args.opset)
        record.update(onnx=str(args.onnx), onnx_relative_error=None)
        say(f"wrote {args.onnx} (onnxruntime not installed: not verified)")
        return
    report = export_integer_onnx(model, args.onnx, input_size, args.opset, example=torch.cat([example, example[:1]]),
                                 tolerance=args.tolerance)
    record.update(onnx=str(args.onnx), onnx_relative_error=report["relative_error"],
                  onnx_argmax_agreement=report["argmax_agreement"])
    say(f"wrote {args.onnx}; onnxruntime vs the integer model max relative error {report['relative_error']:.2e}, "
        f"same class on {report['argmax_agreement']:.0%} of {report['num_images']} random inputs")
