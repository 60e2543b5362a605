"""``frugalvision deploy``: fuse a checkpoint into its deploy form; save it and/or export it to ONNX.

Fusion is :func:`frugalvision.reparameterize_model` (VanillaNet: Chen et al., NeurIPS 2023, arXiv 2305.12972,
deploy conversion). The fused output is compared with the original on a seeded random batch, and the ONNX file, when
written, with onnxruntime (optional extra ``frugalvision[export]``). ONNX files use the standard operator set only:
adder layers are written as an exact decomposition (:mod:`frugalvision.export.onnx`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError, ExportError
from .options import add_model_arguments, check_output_path

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "run"]

HELP = "fuse a checkpoint for deployment (safetensors and/or ONNX)"
DESCRIPTION = ("Fuse a trained model (fold BatchNorms, merge convs) into its deploy form, check that it computes the "
               "same function, and write it as a frugalvision checkpoint and/or ONNX.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--output", type=Path, help="write the fused model here (.safetensors)")
    p.add_argument("--onnx", type=Path, help="export the fused model to this ONNX file")
    p.add_argument("--opset", type=int, default=17, help="ONNX operator set version")
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                   help="example input size (default: the model's, 3 224 224 for ImageNet models)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest relative error accepted in the checks")
    p.add_argument("--json", action="store_true", help="print one JSON object (parameters, errors, files written)")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..export import export_onnx, relative_error
    from ..layers.reparam import reparameterize_model
    from ..models import save_model
    from .common import load_model_from_args, model_input_size

    if args.output is None and args.onnx is None:
        raise ConfigError("nothing to write: give --output FILE.safetensors and/or --onnx FILE.onnx")
    check_output_path(args.output, "--output", suffixes=(".safetensors",))
    check_output_path(args.onnx, "--onnx", suffixes=(".onnx",))
    model = load_model_from_args(args)
    input_size = model_input_size(model, args.input_size)
    fused = reparameterize_model(model)
    example = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        err = relative_error(fused(example), model(example))
    params = (sum(p.numel() for p in model.parameters()), sum(p.numel() for p in fused.parameters()))
    record = {"checkpoint": str(args.checkpoint), "params": params[0], "fused_params": params[1],
              "fused_relative_error": err}
    say = (lambda text: None) if args.json else print
    say(f"fused {params[0]:,} -> {params[1]:,} parameters; max relative error vs original {err:.2e}")
    if err > args.tolerance:
        raise ExportError(f"fused model differs from the original (relative error {err:.2e} > {args.tolerance:g})")
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
    if args.json:
        print(json.dumps(record))
    return 0
