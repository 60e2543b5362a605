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
from pathlib import Path

import torch

from ..errors import ConfigError, ExportError
from .common import add_model_arguments, load_model_from_args, model_input_size

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "deploy", help="fuse a checkpoint for deployment (safetensors and/or ONNX)",
        description="Fuse a trained model (fold BatchNorms, merge convs) into its deploy form, check that it "
                    "computes the same function, and write it as a frugalvision checkpoint and/or ONNX.")
    add_model_arguments(p)
    p.add_argument("--output", type=Path, help="write the fused model here (.safetensors; not for integer models)")
    p.add_argument("--onnx", type=Path, help="export the fused model (or the integer model of a quantize output) to "
                   "this ONNX file")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                   help="example input size (default: the model's, 3 224 224 for ImageNet models)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest relative error accepted in the checks")
    return p


def run(args: argparse.Namespace) -> int:
    from ..quant import is_quantized

    if args.output is None and args.onnx is None:
        raise ConfigError("nothing to write: give --output FILE.safetensors and/or --onnx FILE.onnx")
    model = load_model_from_args(args)
    input_size = model_input_size(model, args.input_size)
    example = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0))
    if is_quantized(model):
        return _deploy_integer(args, model, input_size, example)
    return _deploy_float(args, model, example)


def _same_state(model: torch.nn.Module, fused: torch.nn.Module) -> bool:
    """Whether fusion changed nothing: the same tensors under the same names."""
    before, after = model.state_dict(), fused.state_dict()
    return before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def _deploy_float(args: argparse.Namespace, model: torch.nn.Module, example: torch.Tensor) -> int:
    from ..analysis.counting import parameter_count
    from ..export import export_onnx, relative_error
    from ..layers.reparam import reparameterize_model
    from ..models import save_model

    fused = reparameterize_model(model)
    if _same_state(model, fused):
        print(f"nothing to fuse (no BatchNorm or branch of this model folds): {parameter_count(model):,} parameters")
    else:
        with torch.no_grad():
            err = relative_error(fused(example), model(example))
        print(f"fused {parameter_count(model):,} -> {parameter_count(fused):,} parameters; max relative error vs "
              f"original {err:.2e}")
        if err > args.tolerance:
            raise ExportError(f"fused model differs from the original (relative error {err:.2e} > "
                              f"{args.tolerance:g})")
    if args.output is not None:
        save_model(args.output, fused)
        print(f"wrote {args.output}")
    if args.onnx is not None:
        onnx_err = export_onnx(fused, args.onnx, example, args.opset, tolerance=args.tolerance)
        if onnx_err is None:
            print(f"wrote {args.onnx} (onnxruntime not installed: not verified)")
        else:
            print(f"wrote {args.onnx}; onnxruntime vs PyTorch max relative error {onnx_err:.2e}")
    return 0


def _deploy_integer(args: argparse.Namespace, model: torch.nn.Module, input_size: tuple[int, int, int],
                    example: torch.Tensor) -> int:
    """An integer model (a ``quantize`` output) is already in its deploy form: ONNX export only."""
    from ..analysis.counting import parameter_count
    from ..export import export_integer_onnx

    if args.output is not None:
        raise ConfigError(f"{args.checkpoint} is an integer model (a quantize output), already in its deploy form: "
                          "--output does not apply; use --onnx")
    print(f"integer model: nothing to fuse; {parameter_count(model):,} parameters")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        export_integer_onnx(model, args.onnx, input_size, args.opset)
        print(f"wrote {args.onnx} (onnxruntime not installed: not verified)")
        return 0
    report = export_integer_onnx(model, args.onnx, input_size, args.opset, example=torch.cat([example, example[:1]]),
                                 tolerance=args.tolerance)
    print(f"wrote {args.onnx}; onnxruntime vs the integer model max relative error {report['relative_error']:.2e}, "
          f"same class on {report['argmax_agreement']:.0%} of {report['num_images']} random inputs")
    return 0
