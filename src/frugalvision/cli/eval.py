"""``frugalvision eval``: accuracy and loss of a checkpoint on a dataset split."""

from __future__ import annotations

import argparse
import json

from ..names import DATASET_NAMES
from .options import add_data_config_arguments, add_model_arguments

HELP = "evaluate a checkpoint (run folder or file) on a dataset"
DESCRIPTION = ("Evaluate a frugalvision run or checkpoint, or an official checkpoint with --model. Images are "
               "prepared as the checkpoint was trained (its data config).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--dataset", required=True, choices=DATASET_NAMES, help="dataset to evaluate on")
    p.add_argument("--data-dir", help="folder of the dataset's files (MNIST test: the two t10k files, .gz or not; "
                   "folder: DIR with train/, val/ or test/ class folders)")
    p.add_argument("--split", help="split to evaluate (default: test where the dataset has one, else val; folder: val)")
    add_data_config_arguments(p)
    p.add_argument("--batch-size", type=int, default=500, help="images per forward pass")
    p.add_argument("--device", default="auto", help="auto (CUDA when available) | cpu | cuda | cuda:N")
    p.add_argument("--json", action="store_true", help="print one JSON object (top1, top5, loss, num_samples)")


def run(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader

    from ..data import build_dataset, dataset_info
    from ..train.loop import evaluate
    from .common import data_config_from_args, load_model_from_args, run_device

    info = dataset_info(args.dataset)
    split = args.split or ("test" if "test" in info.splits and args.dataset != "folder" else "val")
    model = load_model_from_args(args)
    data_config = data_config_from_args(args, model) if args.dataset != "fake" else None
    device = run_device(model, args.device)
    dataset = build_dataset(args.dataset, split, args.data_dir, data_config=data_config)
    metrics = evaluate(model.to(device), DataLoader(dataset, max(1, args.batch_size)), device)
    metrics = {**metrics, "dataset": args.dataset, "split": split, "checkpoint": str(args.checkpoint)}
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"{args.checkpoint} on {args.dataset}/{split}: top-1 {metrics['top1']:.2f}%, "
              f"top-5 {metrics['top5']:.2f}%, loss {metrics['loss']:.4f} ({metrics['num_samples']} images)")
    return 0
