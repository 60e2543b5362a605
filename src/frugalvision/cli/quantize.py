"""``frugalvision quantize``: a trained AdderNet -> an integer (uint8) model file, with fp32 vs int8 accuracy."""

from __future__ import annotations

import argparse
import json

from .common import add_data_config_arguments, add_model_arguments, data_config_from_args, load_model_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ..data import DATASETS

    p = subparsers.add_parser(
        "quantize", help="convert a trained AdderNet into an integer (uint8) model",
        description="Post-training quantisation of an AdderNet onto the uint8 sum-of-absolute-differences kernels: "
        "calibrates on training images of --calibration, prints fp32 vs int8 accuracy on its validation split and "
        "writes the integer model (frugalvision.load_model, and every command's --checkpoint, read it).")
    add_model_arguments(p)
    p.add_argument("--calibration", required=True, metavar="DATASET", choices=tuple(DATASETS),
                   help="dataset whose train split calibrates and whose val split measures "
                   f"({', '.join(DATASETS)})")
    p.add_argument("--data-dir", help="folder of the dataset's files (not needed for mnist5k; folder: DIR with "
                   "train/ and val/ class folders)")
    add_data_config_arguments(p)
    p.add_argument("--calibration-images", type=int, default=512, help="training images used (default 512)")
    p.add_argument("--observer", default="auto", choices=("auto", "minmax", "percentile", "mse"),
                   help="how activation ranges are chosen (default auto: the best of the three on the calibration "
                   "images)")
    p.add_argument("--stem", default="fp32", choices=("fp32", "int8"),
                   help="multiplicative first layer of CIFAR/ImageNet models in fp32 (default) or int8 (~5%% faster, "
                   "slightly less accurate)")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0, help="seed of the random choice of calibration images")
    p.add_argument("--output", required=True, help="file to write (.safetensors)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    return p


def run(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader, Subset

    from ..data import build_dataset
    from ..errors import ConfigError
    from ..quant import quantize, save_quantized
    from ..quant.compare import compare_models

    if not str(args.output).endswith(".safetensors"):
        raise ConfigError(f"--output must be a .safetensors file, got {args.output}")
    if args.calibration_images < 1:
        raise ConfigError("--calibration-images must be >= 1")
    model = load_model_from_args(args).cpu().eval()
    data_config = data_config_from_args(args, model) if args.calibration != "fake" else None
    train = build_dataset(args.calibration, "train", args.data_dir, data_config=data_config)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))
    calibration = Subset(train, order[: args.calibration_images].tolist())
    qmodel = quantize(model, DataLoader(calibration, batch_size=64), observer=args.observer, stem=args.stem,
                      max_images=args.calibration_images)
    if data_config is not None:
        qmodel.data_config = data_config
    save_quantized(qmodel, args.output)
    val = build_dataset(args.calibration, "val", args.data_dir, data_config=data_config)
    metrics = compare_models(model, qmodel, DataLoader(val, batch_size=max(1, args.batch_size)))
    record = qmodel.frugalvision_cfg["quantized"]
    metrics = {**metrics, "dataset": args.calibration, "split": "val", "calibration_images": len(calibration),
               "observer": record["observer"], "layout": record["layout"], "output": str(args.output)}
    if args.json:
        print(json.dumps(metrics))
        return 0
    print(f"{args.calibration}/val ({metrics['num_samples']} images): fp32 top-1 {metrics['fp32_top1']:.2f}%, "
          f"int8 top-1 {metrics['int8_top1']:.2f}%, agreement {metrics['agreement']:.2f}%, "
          f"logit relative error {metrics['logit_rel_error']:.2%}")
    print(f"calibrated on {len(calibration)} {args.calibration}/train images (observer {record['observer']}, "
          f"{record['layout']} layout); wrote {args.output}")
    return 0
