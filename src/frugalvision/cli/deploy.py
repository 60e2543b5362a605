"""``frugalvision deploy``: fuse a checkpoint into its deploy form; save it and/or export it to ONNX.

Fusion is :func:`frugalvision.reparameterize_model` (VanillaNet: Chen et al., NeurIPS 2023, arXiv 2305.12972,
deploy conversion). The fused output is compared with the original on a seeded random batch, and the ONNX file, when
written, with onnxruntime (optional extra ``frugalvision[export]``). ONNX files use the standard operator set only:
adder layers are written as an exact decomposition (:mod:`frugalvision.export.onnx`).
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
    p.add_argument("--output", type=Path, help="write the fused model here (.safetensors)")
    p.add_argument("--onnx", type=Path, help="export the fused model to this ONNX file")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                   help="example input size (default: the model's, 3 224 224 for ImageNet models)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest relative error accepted in the checks")
    return p


def run(args: argparse.Namespace) -> int:
    from ..export import export_onnx, relative_error
    from ..layers.reparam import reparameterize_model
    from ..models import save_model

    if args.output is None and args.onnx is None:
        raise ConfigError("nothing to write: give --output FILE.safetensors and/or --onnx FILE.onnx")
    model = load_model_from_args(args)
    input_size = model_input_size(model, args.input_size)
    fused = reparameterize_model(model)
    example = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        err = relative_error(fused(example), model(example))
    params = (sum(p.numel() for p in model.parameters()), sum(p.numel() for p in fused.parameters()))
    print(f"fused {params[0]:,} -> {params[1]:,} parameters; max relative error vs original {err:.2e}")
    if err > args.tolerance:
        raise ExportError(f"fused model differs from the original (relative error {err:.2e} > {args.tolerance:g})")
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
