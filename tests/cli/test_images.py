"""Using it on your own images: train on an image folder, predict image files, evaluate a split, and official
checkpoints (with --model) in eval, predict, count and plot, through one code path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from frugalvision import create_model, load_model
from frugalvision.cli.main import main
from frugalvision.models.resnet import official_state_dict

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
def _write_folder(root: Path, classes, splits=("train", "val", "test"), per_class=3, size=(12, 10), seed=0) -> None:
    """Images whose colour depends on the class (learnable), with noise; PNG for train, JPEG elsewhere."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                base = np.array([40 + 200 * (index % 2), 40 + 100 * (index % 3), 220 - 60 * index % 256])
                pixels = np.clip(base + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
                suffix = ".png" if split == "train" else ".jpg"
                Image.fromarray(pixels).save(folder / f"{i}{suffix}")


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """LeNet-5-BN (CNN) trained for 2 epochs through the CLI on a 3-class folder of 12x10 RGB images, at 1x28x28."""
    root = tmp_path_factory.mktemp("images")
    _write_folder(root / "data", ("circle", "square", "star"))
    assert main(["train", "--model", "lenet5_bn", "--conv-type", "conv", "--dataset", "folder", "--data-dir",
                 str(root / "data"), "--input-size", "1", "28", "28", "--epochs", "2", "--batch-size", "4",
                 "--output", str(root / "runs"), "--no-progress"]) == 0
    return root / "data", root / "runs" / "lenet5_bn_conv"


def test_a_folder_run_stores_its_statistics_and_class_names(folder_run):
    data_dir, run_dir = folder_run
    model = load_model(run_dir)
    config = model.data_config
    assert config.class_names == ("circle", "square", "star") and config.input_size == (1, 28, 28)
    # mean / std of the training images at the input size: greyscale (PIL's L conversion), resized to 28x28
    pixels = np.stack([np.asarray(Image.open(p).convert("L").resize((28, 28), Image.BILINEAR), dtype=np.float64)
                       for p in sorted((data_dir / "train").rglob("*.png"))]) / 255
    assert config.mean[0] == pytest.approx(pixels.mean(), abs=1e-6)
    assert config.std[0] == pytest.approx(pixels.std(), abs=1e-6)


def test_predict_gives_the_models_probabilities_with_class_names(folder_run, capsys):
    data_dir, run_dir = folder_run
    image = data_dir / "test" / "star" / "0.jpg"
    assert main(["predict", "--checkpoint", str(run_dir), str(image), "--top-k", "3", "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)["predictions"]
    # the same by hand: PIL greyscale + bilinear resize, the stored mean / std, the saved model, softmax
    model = load_model(run_dir)
    config = model.data_config
    x = np.asarray(Image.open(image).convert("L").resize((28, 28), Image.BILINEAR), dtype=np.float32) / 255
    x = torch.from_numpy((x - config.mean[0]) / config.std[0])[None, None]
    with torch.no_grad():
        probabilities = model(x).softmax(1)[0]
    order = probabilities.argsort(descending=True).tolist()
    assert [entry["class"] for entry in prediction["top_k"]] == [config.class_names[i] for i in order]
    assert [entry["probability"] for entry in prediction["top_k"]] == pytest.approx(probabilities[order].tolist(),
                                                                                    abs=1e-5)
    assert main(["predict", "--checkpoint", str(run_dir), str(data_dir / "test"), "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 9 and all(line.split(": ")[1].split()[0] in config.class_names for line in lines)


def test_eval_reads_only_the_split_it_needs(folder_run, tmp_path, capsys):
    data_dir, run_dir = folder_run
    only_test = tmp_path / "only_test"
    shutil.copytree(data_dir / "test", only_test / "test")
    assert main(["eval", "--checkpoint", str(run_dir), "--dataset", "folder", "--data-dir", str(only_test),
                 "--split", "test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_samples"] == 9 and result["split"] == "test"


def _official_resnet20(path: Path, seed: int = 0) -> torch.nn.Module:
    """A resnet20 AdderNet saved the way the official code saves (DataParallel prefix, ``.adder`` names)."""
    torch.manual_seed(seed)
    model = create_model("resnet20", conv_type="adder").eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # statistics of the order of adder outputs, as in the release
            m.running_mean.uniform_(-300, -100)
            m.running_var.uniform_(50, 100)
    torch.save(official_state_dict(model), path)
    return model


def test_official_checkpoint_in_eval_predict_count_and_plot(tmp_path, capsys):
    checkpoint = tmp_path / "ResNet20-AdderNet.pth"
    reference = _official_resnet20(checkpoint)
    _write_folder(tmp_path / "cifar", CIFAR_CLASSES, splits=("val",), per_class=1, size=(32, 32))
    official = ["--checkpoint", str(checkpoint), "--model", "resnet20", "--conv-type", "adder"]
    assert main(["eval", *official, "--dataset", "folder", "--data-dir", str(tmp_path / "cifar"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_samples"] == 10
    image = tmp_path / "cifar" / "val" / "cat" / "0.jpg"
    assert main(["predict", *official, str(image), "--top-k", "1", "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)["predictions"]
    # by hand with the official CIFAR preprocessing (ToTensor + the mean / std of the official main.py)
    x = torch.from_numpy(np.asarray(Image.open(image).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    x = (x - torch.tensor([0.4914, 0.4822, 0.4465])[:, None, None]) / torch.tensor([0.2023, 0.1994, 0.2010])[:, None,
                                                                                                            None]
    with torch.no_grad():
        expected = reference(x[None]).softmax(1)[0]
    assert prediction["top_k"][0]["class"] == CIFAR_CLASSES[int(expected.argmax())]
    assert prediction["top_k"][0]["probability"] == pytest.approx(float(expected.max()), abs=1e-4)
    assert main(["count", *official, "--json"]) == 0
    counted = json.loads(capsys.readouterr().out)
    assert main(["count", "--model", "resnet20", "--conv-type", "adder", "--json"]) == 0
    fresh = json.loads(capsys.readouterr().out)
    assert {k: counted[k] for k in ("params", "mul", "add")} == {k: fresh[k] for k in ("params", "mul", "add")}
    assert main(["plot", "weights", *official, "--output", str(tmp_path / "w.png")]) == 0
    assert (tmp_path / "w.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--dataset", "mnist5k"], "carries no frugalvision metadata: name its architecture with --model"),
        (["count", "--conv-type", "adder"], "--conv-type, --num-classes, --model-option and --ema describe"),
        (["predict", "--model", "resnet20", "--model-option", "conv_type"], "--model-option takes KEY=VALUE"),
        (["predict", "--model", "resnet20", "--model-option", "widen=2"], "has no option 'widen'"),
    ],
)
def test_official_checkpoint_options_are_checked(argv, message, tmp_path, capsys):
    checkpoint = tmp_path / "official.pth"
    _official_resnet20(checkpoint)
    extra = [str(tmp_path)] if argv[0] == "predict" else []
    assert main([*argv, "--checkpoint", str(checkpoint), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err


@pytest.mark.slow
def test_released_resnet20_on_the_shared_cifar_sample_matches_an_independent_pipeline(capsys, shared_data):
    """``eval`` of the released checkpoint on the shared JPEG folder equals torchvision's ImageFolder + ToTensor +
    Normalize (the official main.py preprocessing) through the same weights."""
    from torchvision import datasets, transforms

    checkpoint = shared_data("official/ResNet20-AdderNet.pth")
    folder = shared_data("cifar10_jpeg_10k")
    assert main(["eval", "--checkpoint", str(checkpoint), "--model", "resnet20", "--conv-type", "adder",
                 "--dataset", "folder", "--data-dir", str(folder), "--split", "val", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    model = create_model("resnet20", conv_type="adder", checkpoint_path=checkpoint).eval()
    preprocess = transforms.Compose([transforms.ToTensor(),
                                     transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))])
    reference = datasets.ImageFolder(str(folder / "val"), preprocess)
    correct = 0
    with torch.no_grad():
        for images, labels in torch.utils.data.DataLoader(reference, batch_size=500):
            correct += int((model(images).argmax(1) == labels).sum())
    assert result["num_samples"] == len(reference) == 1000
    assert result["top1"] == pytest.approx(100 * correct / len(reference))
    five = sorted((folder / "val" / "ship").glob("*.jpg"))[:5]
    assert main(["predict", "--checkpoint", str(checkpoint), "--model", "resnet20", "--conv-type", "adder",
                 *map(str, five), "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and all(line.split(": ")[1].split()[0] in CIFAR_CLASSES for line in lines)
