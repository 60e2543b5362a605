"""``frugalvision train``: train models; with no arguments, AdderNet LeNet-5-BN and its CNN twin on mnist5k."""

from __future__ import annotations

import argparse
from typing import Any

from ..names import ALR_MODES, CONV_TYPES, DATASET_NAMES
from .options import check_output_path, hide_aliases

DEFAULT_MODEL = "lenet5_bn"
DEFAULT_CONV_TYPES = ("adder", "conv")
MODEL_HELP = ("registered model name (frugalvision.list_models()); it is built with its own default conv type -- "
              "adder for the AdderNet zoo (lenet5_bn, resnet20, ...), conv for VanillaNet -- unless --conv-type says "
              "otherwise (README, model table)")

HELP = "train a model (default: AdderNet LeNet-5-BN and its CNN twin on the embedded MNIST sample)"
DESCRIPTION = ("Train models. With no arguments: the AdderNet LeNet-5-BN and its CNN twin on mnist5k, then a "
               "side-by-side table of accuracy and cost. Precedence: model defaults < --config recipe < flags. "
               "Unset options take the model's training defaults (recipe or registry).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help=f"{MODEL_HELP} (default {DEFAULT_MODEL})")
    p.add_argument("--conv-type", help=f"{' | '.join(CONV_TYPES)}; a comma list trains several twins "
                   f"(default for {DEFAULT_MODEL}: {','.join(DEFAULT_CONV_TYPES)}; else the model's own)")
    p.add_argument("--dataset", choices=DATASET_NAMES, help="training data (default: the recipe's, else mnist5k)")
    p.add_argument("--data-dir", help="folder of the dataset's files (not needed for mnist5k and fake)")
    p.add_argument("--download", action="store_true", default=None, help="let torchvision download the dataset")
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                   help="folder / imagenet: resize the images to this size (default: their own size)")
    p.add_argument("--mean", type=float, nargs="+", help="per-channel mean (default: the dataset's; a folder's is "
                   "computed on its training images)")
    p.add_argument("--std", type=float, nargs="+", help="per-channel standard deviation (default: as --mean)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the model's training defaults)")
    p.add_argument("--batch-size", type=int, help="images per step (default: the model's training defaults)")
    p.add_argument("--lr", type=float, help="base learning rate")
    p.add_argument("--alr", choices=ALR_MODES, help="AdderNet learning-rate mode")
    p.add_argument("--seed", type=int, help="random seed of initialisation and data order (default 0)")
    p.add_argument("--teacher", metavar="RUN_OR_FILE", help="distil from this trained model (logit distillation, "
                   "Hinton et al. 2015); the teacher stays frozen and is not stored in the student's checkpoints")
    p.add_argument("--teacher-model", help="the teacher's architecture, for checkpoints without frugalvision metadata")
    p.add_argument("--teacher-conv-type", choices=CONV_TYPES, help="with --teacher-model: the teacher's conv type")
    p.add_argument("--kd-alpha", type=float, help="weight of the distillation term (default 0.5)")
    p.add_argument("--kd-temperature", type=float, help="softmax temperature of the distillation term (default 4)")
    p.add_argument("--name", dest="run_name", help="run folder name (default MODEL_CONVTYPE, +_kd when distilling)")
    p.add_argument("--workers", type=int, dest="num_workers", help="data-loading worker processes")
    hide_aliases(p.add_argument("--output-dir", "--output", dest="output", metavar="DIR",
                                help="parent folder of the run folders (default runs/)"), "--output")
    p.add_argument("--config", help="YAML recipe (see recipes/)")
    p.add_argument("--resume", action="store_true", help="continue the run(s) in --output from the last epoch")
    p.add_argument("--overwrite", action="store_true", help="replace existing run folders")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print one JSON object per run (metrics, cost, run folder) "
                   "instead of the table")


_FLAG_FIELDS = ("dataset", "data_dir", "download", "input_size", "mean", "std", "epochs", "batch_size", "lr", "alr",
                "seed", "teacher", "teacher_model", "kd_alpha", "kd_temperature", "run_name", "num_workers", "output",
                "device")


def build_configs(args: argparse.Namespace) -> list[Any]:
    """One TrainConfig per conv type to train: model defaults < the recipe < the flags (every config is validated
    here, before any data is read)."""
    from ..errors import ConfigError
    from ..train.config import load_recipe
    from ..train.runs import resolve_config

    recipe = load_recipe(args.config) if args.config else {}
    model = args.model or recipe.get("model") or DEFAULT_MODEL
    flags = {k: getattr(args, k) for k in _FLAG_FIELDS if getattr(args, k) is not None}
    if args.teacher_conv_type is not None:
        flags["teacher_model_kwargs"] = {**recipe.get("teacher_model_kwargs", {}), "conv_type": args.teacher_conv_type}
    if args.conv_type is not None:
        conv_types = [c.strip() for c in args.conv_type.split(",") if c.strip()]
        if not conv_types:
            raise ConfigError("--conv-type needs at least one conv type")
    elif args.model is None and not recipe:
        conv_types = list(DEFAULT_CONV_TYPES)
    else:
        conv_types = [None]  # the recipe's or the model's own
    if args.run_name is not None and len(conv_types) > 1:
        raise ConfigError("--name names one run; train several conv types without it (or one at a time)")
    configs = []
    for conv_type in conv_types:
        model_kwargs = {"conv_type": conv_type} if conv_type is not None else {}
        configs.append(resolve_config(model, recipe, **flags, model_kwargs=model_kwargs))
        _check_model_options(configs[-1], args.config if recipe.get("model_kwargs") else None)
    return configs


def _check_model_options(config: Any, recipe_path: str | None) -> None:
    """Build the model on the meta device (no memory, no data): an unknown or bad model option fails here, before
    the data is read, naming the recipe file its model_kwargs came from."""
    import torch

    from ..errors import ConfigError
    from ..models import create_model

    try:
        with torch.device("meta"):
            create_model(config.model, **config.model_kwargs)
    except ConfigError as error:
        where = f"config file {recipe_path}: model_kwargs: " if recipe_path else ""
        raise ConfigError(f"{where}{error}") from None


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    import torch.distributed as dist

    from ..analysis.counting import count_ops
    from ..models import load_model
    from ..train.engine import train
    from .common import model_input_size, print_comparison

    configs = build_configs(args)
    check_output_path(configs[0].output, "--output-dir", folder=True)
    results = []
    for config in configs:
        # with --json, stdout holds only the JSON: the epoch log goes to stderr
        log = (lambda line: print(line, file=sys.stderr)) if args.json else print
        result = train(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress, log=log)
        if dist.is_initialized() and dist.get_rank() != 0:
            continue
        model = load_model(result.run_dir)
        costs = count_ops(model, model_input_size(model, config.fake_input_size if config.dataset == "fake" else None))
        results.append((config, result, costs))
    if args.json:
        for config, result, costs in results:
            print(json.dumps({"run": config.name, "run_dir": str(result.run_dir), **result.metrics,
                              **{k: v for k, v in costs.items() if k != "layers"}}, default=str))
    else:
        print_comparison(results)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0
