"""``frugalvision predict``: the most probable classes of image files, by a trained model or an official checkpoint."""

from __future__ import annotations

import argparse
import json

from .options import add_data_config_arguments, add_model_arguments

HELP = "top-k classes of image files (or every image in a folder)"
DESCRIPTION = ("Classify image files with a run folder or checkpoint. Images are prepared exactly as in training "
               "(the run's stored data config; for official checkpoints, the model's default data config).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders (searched "
                   "recursively for jpg, jpeg, png, bmp, webp)")
    add_model_arguments(p)
    add_data_config_arguments(p)
    p.add_argument("--top-k", type=int, default=5, help="classes per image")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--device", default="auto", help="auto (CUDA when available) | cpu | cuda | cuda:N")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..inference import find_images, predict
    from .common import data_config_from_args, load_model_from_args, run_device

    model = load_model_from_args(args)
    data_config = data_config_from_args(args, model)
    paths = find_images(args.images)
    device = run_device(model, args.device)
    predictions = predict(model, paths, data_config=data_config, top_k=args.top_k, batch_size=max(1, args.batch_size),
                          device=device)
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "predictions": [p.to_dict() for p in predictions]}))
        return 0
    for prediction in predictions:
        classes = ", ".join(f"{name} {100 * probability:.1f}%" for name, _, probability in prediction.top_k)
        print(f"{prediction.image}: {classes}")
    return 0
