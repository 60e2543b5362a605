"""``frugalvision quantize``: a trained AdderNet -> an integer (uint8) model file, with fp32 vs int8 accuracy."""

from __future__ import annotations

import argparse
import json

from ..names import DATASET_NAMES
from .options import add_data_config_arguments, add_model_arguments, check_output_path, hide_aliases

HELP = "convert a trained AdderNet into an integer (uint8) model"
DESCRIPTION = ("Post-training quantisation of an AdderNet onto the uint8 sum-of-absolute-differences kernels: "
               "calibrates on training images of --dataset, prints fp32 vs int8 accuracy on its validation split and "
               "writes the integer model (frugalvision.load_model, and every command's --checkpoint, read it).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    hide_aliases(p.add_argument("--dataset", "--calibration", required=True, choices=DATASET_NAMES,
                                help="dataset whose train split calibrates and whose val split measures"),
                 "--calibration")
    p.add_argument("--data-dir", help="folder of the dataset's files (not needed for mnist5k; folder: DIR with "
                   "train/ and val/ class folders)")
    add_data_config_arguments(p)
    p.add_argument("--calibration-images", type=int, default=512, help="training images used")
    p.add_argument("--observer", default="auto", choices=("auto", "minmax", "percentile", "mse"),
                   help="how activation ranges are chosen (auto: the best of the three on the calibration images)")
    p.add_argument("--stem", default="fp32", choices=("fp32", "int8"),
                   help="multiplicative first layer of CIFAR/ImageNet models in fp32 or int8 (~5%% faster, "
                   "slightly less accurate)")
    p.add_argument("--batch-size", type=int, default=250, help="images per forward pass of the accuracy check")
    p.add_argument("--seed", type=int, default=0, help="seed of the random choice of calibration images")
    p.add_argument("--output", required=True, help="file to write (.safetensors)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")


def run(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader, Subset

    from ..data import build_dataset
    from ..errors import ConfigError
    from ..quant import quantize, save_quantized
    from ..quant.compare import compare_models
    from .common import data_config_from_args, load_model_from_args

    check_output_path(args.output, "--output", suffixes=(".safetensors",))
    if args.calibration_images < 1:
        raise ConfigError("--calibration-images must be >= 1")
    model = load_model_from_args(args).cpu().eval()
    data_config = data_config_from_args(args, model) if args.dataset != "fake" else None
    train = build_dataset(args.dataset, "train", args.data_dir, data_config=data_config)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))
    calibration = Subset(train, order[: args.calibration_images].tolist())
    qmodel = quantize(model, DataLoader(calibration, batch_size=64), observer=args.observer, stem=args.stem,
                      max_images=args.calibration_images)
    if data_config is not None:
        qmodel.data_config = data_config
    save_quantized(qmodel, args.output)
    val = build_dataset(args.dataset, "val", args.data_dir, data_config=data_config)
    metrics = compare_models(model, qmodel, DataLoader(val, batch_size=max(1, args.batch_size)))
    record = qmodel.frugalvision_cfg["quantized"]
    metrics = {**metrics, "dataset": args.dataset, "split": "val", "calibration_images": len(calibration),
               "observer": record["observer"], "layout": record["layout"], "output": str(args.output)}
    if args.json:
        print(json.dumps(metrics))
        return 0
    print(f"{args.dataset}/val ({metrics['num_samples']} images): fp32 top-1 {metrics['fp32_top1']:.2f}%, "
          f"int8 top-1 {metrics['int8_top1']:.2f}%, agreement {metrics['agreement']:.2f}%, "
          f"logit relative error {metrics['logit_rel_error']:.2%}")
    print(f"calibrated on {len(calibration)} {args.dataset}/train images (observer {record['observer']}, "
          f"{record['layout']} layout); wrote {args.output}")
    return 0
