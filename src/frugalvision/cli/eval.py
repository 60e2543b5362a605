"""``frugalvision eval``: accuracy and loss of a checkpoint on a dataset split."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("eval", help="evaluate a checkpoint (run folder or file) on a dataset",
                              description="Evaluate a frugalvision checkpoint (run folder or .safetensors file).")
    p.add_argument("--checkpoint", required=True, help="run folder or checkpoint file")
    p.add_argument("--dataset", required=True, choices=("mnist5k", "mnist", "cifar10", "cifar100", "imagenet", "fake"))
    p.add_argument("--data-dir", help="folder of the dataset's files (MNIST test: the two t10k files, .gz or not)")
    p.add_argument("--split", help="split to evaluate (default: test where the dataset has one, else val)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object (top1, top5, loss, num_samples)")
    return p


def run(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader

    from ..data import build_dataset, dataset_info
    from ..models import load_model
    from ..train.distributed import resolve_device
    from ..train.loop import evaluate

    info = dataset_info(args.dataset)
    split = args.split or ("test" if "test" in info.splits else "val")
    model = load_model(args.checkpoint)
    device = resolve_device(args.device)
    dataset = build_dataset(args.dataset, split, args.data_dir)
    metrics = evaluate(model.to(device), DataLoader(dataset, args.batch_size), device)
    metrics = {**metrics, "dataset": args.dataset, "split": split, "checkpoint": str(args.checkpoint)}
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"{args.checkpoint} on {args.dataset}/{split}: top-1 {metrics['top1']:.2f}%, "
              f"top-5 {metrics['top5']:.2f}%, loss {metrics['loss']:.4f} ({metrics['num_samples']} images)")
    return 0
