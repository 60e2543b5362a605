"""VanillaNet: structure, published counts, exact fusion, official checkpoint layouts, deep training end to end.

The official checkpoints are not available offline. Their layout is re-stated here independently (key names and
shapes from the official ``models/vanillanet.py``), random tensors are written in
that layout, nested as the official ``save_model`` nests them, and the numbers our model computes from them are
compared with a plain functional forward written from the paper / official code description.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from frugalvision import count_ops, create_model, list_models, load_model, reparameterize_model
from frugalvision.models import load_checkpoint, read_state_dict
from frugalvision.models.checkpoint import save_model_file
from frugalvision.models.vanillanet import _CFGS, VanillaNet
from frugalvision.train.callbacks import TrainContext
from frugalvision.train.deep_training import DeepTraining, act_learn_at

# published deploy params (M) and MACs (G) at 224 (VanillaNet paper's table, official code measured with torchprofile)
PUBLISHED = {
    "vanillanet_5": (15.52, 5.16), "vanillanet_6": (32.51, 5.99), "vanillanet_7": (32.80, 6.89),
    "vanillanet_8": (37.10, 7.74), "vanillanet_9": (41.40, 8.58), "vanillanet_10": (45.69, 9.42),
    "vanillanet_11": (49.99, 10.26), "vanillanet_12": (54.29, 11.10), "vanillanet_13": (58.59, 11.94),
    "vanillanet_13_x1_5": (127.80, 26.55), "vanillanet_13_x1_5_ada_pool": (127.80, 48.98),
}
PUBLISHED_TRAIN_PARAMS = {"vanillanet_5": 22.33, "vanillanet_6": 56.12, "vanillanet_13": 107.70,
                          "vanillanet_13_x1_5": 236.94}
TINY = dict(dims=[8, 12, 16], strides=[2, 2], num_classes=5, act_num=1)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            with torch.no_grad():
                module.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                module.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    return model.eval()


def rel_err(a: Tensor, b: Tensor) -> float:
    return float(((a - b).abs().max() / b.abs().max()).detach())


# ---- structure and counts ---------------------------------------------------------------------------------
def test_all_variants_registered() -> None:
    assert set(PUBLISHED) | {"vanillanet_test"} == set(list_models("vanillanet*"))


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_deploy_params_match_published(name: str) -> None:
    with torch.device("meta"):  # shapes only: no memory, no init cost
        deploy = create_model(name, deploy=True)
        train = create_model(name)
    params = sum(p.numel() for p in deploy.parameters()) / 1e6
    assert params == pytest.approx(PUBLISHED[name][0], rel=5e-3)
    if name in PUBLISHED_TRAIN_PARAMS:
        assert sum(p.numel() for p in train.parameters()) / 1e6 == pytest.approx(PUBLISHED_TRAIN_PARAMS[name], rel=5e-3)


def test_deploy_macs_vanillanet_5_match_published() -> None:
    counts = count_ops(create_model("vanillanet_5", deploy=True), (3, 224, 224))
    assert counts["mul"] / 1e9 == pytest.approx(PUBLISHED["vanillanet_5"][1], rel=5e-3)


def test_train_structure_matches_the_official_layers() -> None:
    with torch.device("meta"):
        model = create_model("vanillanet_5")
    assert all(m.eps == 1e-6 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert model.stem1[0].stride == (4, 4) and model.stem1[0].kernel_size == (4, 4)
    block = model.stages[0]
    assert list(block._modules) == ["conv1", "conv2", "pool", "act"]  # pooling after the convs, before the act
    assert isinstance(block.pool, nn.MaxPool2d) and block.act.weight.shape == (1024, 1, 7, 7)
    assert isinstance(model.cls1[0], nn.AdaptiveAvgPool2d) and isinstance(model.cls1[1], nn.Dropout)
    assert model.get_act_learn() == 1.0  # fresh models are ready for released weights
    ada = _CFGS["vanillanet_13_x1_5_ada_pool"]
    tiny_ada = VanillaNet(dims=[d // 48 for d in ada["dims"]], strides=ada["strides"], ada_pool=ada["ada_pool"])
    assert tiny_ada.stem1[0].stride == (3, 3) and tiny_ada.stem1[0].padding == (1, 1)
    feats = tiny_ada.forward_features(torch.randn(1, 3, 224, 224))
    assert feats.shape[-1] == 10  # 75 -> 75, 38, 19 x7, 10, 10


def test_kwargs_reach_the_model_and_logits_have_num_classes() -> None:
    model = create_model("vanillanet_test", num_classes=7, in_chans=1, drop_rate=0.1, act_num=2)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)
    assert model.stem2[2].weight.shape[-1] == 5 and model.cls1[1].p == 0.1


# ---- fusion ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_fusion_exact_every_variant_structure(name: str) -> None:
    """Every variant's strides / pools / stem at 160 px, with widths divided by 32 (full widths at 224: see the
    one-off numbers in benchmarks/results/bench_model_vanillanet_counts.csv)."""
    cfg = dict(_CFGS[name])
    cfg["dims"] = [d // 32 for d in cfg["dims"]]
    model = randomize_bn(VanillaNet(**cfg, num_classes=10), seed=len(name))
    x = torch.randn(1, 3, 160, 160)
    fused = reparameterize_model(model)
    assert rel_err(fused(x), model(x)) <= 1e-5


def test_fusion_exact_full_vanillanet_5() -> None:
    torch.manual_seed(0)
    model = randomize_bn(create_model("vanillanet_5"))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = model(x)
        fused = reparameterize_model(model)
        assert rel_err(fused(x), expected) <= 1e-5
    assert all(p.is_contiguous() for p in fused.parameters())
    assert all(p.is_contiguous(memory_format=torch.contiguous_format) and p.stride()[-1] == 1
               for p in fused.parameters())
    fresh = create_model("vanillanet_5", deploy=True)
    assert {k: v.shape for k, v in fused.state_dict().items()} == {k: v.shape for k, v in fresh.state_dict().items()}


@pytest.mark.parametrize("act_num", [0, 1, 2, 3, 4])
def test_fusion_exact_for_act_num_ablation(act_num: int) -> None:
    model = randomize_bn(create_model("vanillanet_test", act_num=act_num), seed=act_num)
    x = torch.randn(3, 3, 64, 64)
    assert rel_err(reparameterize_model(model)(x), model(x)) <= 1e-5


def test_fusion_leaves_original_working_and_refuses_lambda_below_one() -> None:
    model = randomize_bn(create_model("vanillanet_test"))
    x = torch.randn(2, 3, 32, 32)
    before = model(x)
    fused = reparameterize_model(model)
    assert fused.deploy and not model.deploy
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    model.set_act_learn(0.5)
    with pytest.raises(ValueError, match=r"act_learn=0\.5"):
        reparameterize_model(model)
    assert model(x).shape == (2, 10)
    with pytest.raises(ValueError):
        model.set_act_learn(1.5)


@pytest.mark.parametrize("shortcut", ["before", "after"])
def test_shortcut_ablation_trains_but_does_not_fuse(shortcut: str) -> None:
    model = VanillaNet(**TINY, shortcut=shortcut)
    torch.manual_seed(0)
    # a weighted sum: the plain sum of the logits has zero gradient through the BatchNorm of the classifier
    (model(torch.randn(2, 3, 32, 32)) * torch.randn(2, TINY["num_classes"])).sum().backward()
    proj = model.stages[0].proj[1]  # the residual's pool -> 1x1 conv (dims[0] -> dims[1]) -> BN
    assert isinstance(proj, nn.Conv2d) and proj.weight.shape == (TINY["dims"][1], TINY["dims"][0], 1, 1)
    assert proj.weight.grad is not None and proj.weight.grad.abs().max() > 0, "the shortcut gets no gradient"
    with pytest.raises(ValueError, match="shortcut"):
        reparameterize_model(model)
    with pytest.raises(ValueError):
        VanillaNet(**TINY, shortcut="sideways")


# ---- official checkpoint layouts ------------------------------------------------------------------------------
def official_layout(dims: list[int], strides: list[int], num_classes: int, act_num: int, in_chans: int = 3,
                    deploy: bool = False) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the official state dict, restated from the official module tree."""
    k = 2 * act_num + 1
    keys: dict[str, tuple[int, ...]] = {}

    def conv(prefix: str, out_c: int, in_c: int, kernel: int) -> None:
        keys[f"{prefix}.weight"], keys[f"{prefix}.bias"] = (out_c, in_c, kernel, kernel), (out_c,)

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{name}"] = (c,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    if deploy:
        conv("stem.0", dims[0], in_chans, 4)
        keys["stem.1.weight"], keys["stem.1.bias"] = (dims[0], 1, k, k), (dims[0],)
        for i in range(len(strides)):
            conv(f"stages.{i}.conv", dims[i + 1], dims[i], 1)
            keys[f"stages.{i}.act.weight"], keys[f"stages.{i}.act.bias"] = (dims[i + 1], 1, k, k), (dims[i + 1],)
        conv("cls.2", num_classes, dims[-1], 1)
        return keys
    conv("stem1.0", dims[0], in_chans, 4)
    bn("stem1.1", dims[0])
    conv("stem2.0", dims[0], dims[0], 1)
    bn("stem2.1", dims[0])
    keys["stem2.2.weight"] = (dims[0], 1, k, k)
    bn("stem2.2.bn", dims[0])
    for i in range(len(strides)):
        conv(f"stages.{i}.conv1.0", dims[i], dims[i], 1)
        bn(f"stages.{i}.conv1.1", dims[i])
        conv(f"stages.{i}.conv2.0", dims[i + 1], dims[i], 1)
        bn(f"stages.{i}.conv2.1", dims[i + 1])
        keys[f"stages.{i}.act.weight"] = (dims[i + 1], 1, k, k)
        bn(f"stages.{i}.act.bn", dims[i + 1])
    conv("cls1.2", num_classes, dims[-1], 1)
    bn("cls1.3", num_classes)
    conv("cls2.0", num_classes, num_classes, 1)
    return keys


def random_state(layout: dict[str, tuple[int, ...]], seed: int) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith(".weight") and len(shape) == 1:  # BN gamma
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 10
            state[key] = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
    return state


def reference_forward(sd: dict[str, Tensor], x: Tensor, strides: list[int], act_num: int, deploy: bool,
                      lam: float = 1.0) -> Tensor:
    """The official forward, written out functionally from the key names (eval mode, BN eps 1e-6)."""

    def bn(y: Tensor, p: str) -> Tensor:
        return F.batch_norm(y, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"],
                            sd[f"{p}.bias"], False, 0.0, 1e-6)

    def conv(y: Tensor, p: str, stride: int = 1) -> Tensor:
        return F.conv2d(y, sd[f"{p}.weight"], sd[f"{p}.bias"], stride=stride)

    def series(y: Tensor, p: str) -> Tensor:
        w = sd[f"{p}.weight"]
        y = F.conv2d(F.relu(y), w, sd.get(f"{p}.bias"), padding=act_num, groups=w.shape[0])
        return y if deploy else bn(y, f"{p}.bn")

    if deploy:
        x = series(conv(x, "stem.0", stride=4), "stem.1")
    else:
        x = F.leaky_relu(bn(conv(x, "stem1.0", stride=4), "stem1.1"), lam)
        x = series(bn(conv(x, "stem2.0"), "stem2.1"), "stem2.2")
    for i, s in enumerate(strides):
        p = f"stages.{i}"
        if deploy:
            x = conv(x, f"{p}.conv")
        else:
            x = F.leaky_relu(bn(conv(x, f"{p}.conv1.0"), f"{p}.conv1.1"), lam)
            x = bn(conv(x, f"{p}.conv2.0"), f"{p}.conv2.1")
        x = F.max_pool2d(x, s) if s > 1 else x
        x = series(x, f"{p}.act")
    x = x.mean((2, 3), keepdim=True)
    if deploy:
        return conv(x, "cls.2").flatten(1)
    x = F.leaky_relu(bn(conv(x, "cls1.2"), "cls1.3"), lam)
    return conv(x, "cls2.0").flatten(1)


def test_our_keys_are_the_official_keys() -> None:
    for name in ("vanillanet_5", "vanillanet_13"):
        cfg = _CFGS[name]
        with torch.device("meta"):
            train, deploy = create_model(name), create_model(name, deploy=True)
        for model, is_deploy, count in ((train, False, {"vanillanet_5": 89, "vanillanet_13": 249}[name]),
                                        (deploy, True, {"vanillanet_5": 18, "vanillanet_13": 50}[name])):
            layout = official_layout(cfg["dims"], cfg["strides"], 1000, 3, deploy=is_deploy)
            ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != "_extra_state"}
            assert ours == layout and len(layout) == count


@pytest.mark.parametrize("deploy", [False, True])
def test_official_nested_checkpoint_loads_and_matches_reference(tmp_path: Path, deploy: bool) -> None:
    layout = official_layout(TINY["dims"], TINY["strides"], TINY["num_classes"], TINY["act_num"], deploy=deploy)
    model_sd, ema_sd = random_state(layout, 1), random_state(layout, 2)
    path = tmp_path / "official.pth"
    torch.save({"model": model_sd, "model_ema": ema_sd, "epoch": 299}, path)  # as utils.save_model nests them
    loaded = VanillaNet(**TINY, deploy=deploy)
    loaded.frugalvision_cfg = {"model": "vanillanet_test", "kwargs": {}}
    load_checkpoint(loaded, path)
    x = torch.randn(2, 3, 32, 32)
    expected = reference_forward(model_sd, x, TINY["strides"], TINY["act_num"], deploy)
    assert rel_err(loaded.eval()(x), expected) <= 1e-5
    ema = VanillaNet(**TINY, deploy=deploy).eval()
    state = read_state_dict(path, use_ema=True)
    state["_extra_state"] = torch.tensor(1.0)  # lam, which official files lack (the filter adds it; here by hand)
    ema.load_state_dict(state)
    assert rel_err(ema(x), reference_forward(ema_sd, x, TINY["strides"], TINY["act_num"], deploy)) <= 1e-5


def test_create_model_loads_official_checkpoints(tmp_path: Path) -> None:
    cfg = _CFGS["vanillanet_test"]
    x = torch.randn(2, 3, 32, 32)
    for deploy in (False, True):
        layout = official_layout(cfg["dims"], cfg["strides"], cfg["num_classes"], cfg["act_num"], deploy=deploy)
        sd = random_state(layout, 3)
        path = tmp_path / f"official_{deploy}.pth"
        torch.save({"model": sd}, path)
        model = create_model("vanillanet_test", deploy=deploy, checkpoint_path=path).eval()
        expected = reference_forward(sd, x, cfg["strides"], cfg["act_num"], deploy)
        assert rel_err(model(x), expected) <= 1e-5
    # a train-mode checkpoint straight into a deploy model: fused on load
    train_sd = random_state(official_layout(cfg["dims"], cfg["strides"], cfg["num_classes"], cfg["act_num"]), 4)
    torch.save({"model_ema": train_sd}, tmp_path / "train.pth")
    fused = create_model("vanillanet_test", deploy=True, checkpoint_path=tmp_path / "train.pth").eval()
    expected = reference_forward(train_sd, x, cfg["strides"], cfg["act_num"], deploy=False)
    assert rel_err(fused(x), expected) <= 1e-5
    with pytest.raises(ValueError, match="deploy=True"):
        create_model("vanillanet_test", checkpoint_path=tmp_path / "official_True.pth")


# ---- deep training end to end -------------------------------------------------------------------------------
def test_act_learn_schedules() -> None:
    assert [act_learn_at(e, 4) for e in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert act_learn_at(2, 4, "cosine") == pytest.approx(0.5) and act_learn_at(1, 4, "cosine") < 0.25
    assert act_learn_at(0, 0) == 1.0  # decay_epochs = 0: deep training off
    with pytest.raises(ValueError):
        act_learn_at(0, 4, "step")
    with pytest.raises(ValueError):
        DeepTraining.from_config({"decay_epochs": 2, "typo": 1})


@pytest.mark.slow
def test_tiny_end_to_end_train_fuse_save_load(tmp_path: Path) -> None:
    from timm.utils import ModelEmaV3

    torch.manual_seed(0)
    model = create_model("vanillanet_test", in_chans=1)
    ema = ModelEmaV3(model, decay=0.9)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    callback = DeepTraining.from_config({"decay_epochs": 2, "schedule": "linear"})
    ctx = TrainContext(model=model, optimizer=optimizer, config={}, run_dir=tmp_path, num_epochs=3, ema_model=ema)
    callback.on_train_start(ctx)
    seen = []
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    for epoch in range(3):
        ctx.epoch = epoch
        callback.on_epoch_start(ctx)
        seen.append((model.get_act_learn(), ema.module.get_act_learn(), ctx.extra_metrics["act_learn"]))
        model.train()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update(model)
        if epoch == 1:  # a mid-training checkpoint remembers lam, and so does the callback
            save_model_file(tmp_path / "mid.safetensors", model.state_dict(), model.frugalvision_cfg)
            state = callback.state_dict()
    assert seen == [(0.0, 0.0, 0.0), (0.5, 0.5, 0.5), (1.0, 1.0, 1.0)]
    assert load_model(tmp_path / "mid.safetensors").get_act_learn() == 0.5
    resumed = DeepTraining(decay_epochs=99)
    resumed.load_state_dict(state)
    assert (resumed.decay_epochs, resumed.act_learn) == (2, 0.5)

    model.eval()
    fused = reparameterize_model(model)
    probe = torch.randn(4, 1, 28, 28)
    assert rel_err(fused(probe), model(probe)) <= 1e-5
    save_model_file(tmp_path / "fused.safetensors", fused.state_dict(), fused.frugalvision_cfg)
    reloaded = load_model(tmp_path / "fused.safetensors")
    assert reloaded.deploy
    torch.testing.assert_close(reloaded(probe), fused(probe))
    assert rel_err(reparameterize_model(ema.module)(probe), ema.module.eval()(probe)) <= 1e-5


@pytest.mark.slow
def test_smoke_recipe_trains_through_the_engine(tmp_path: Path, repo_root: Path) -> None:
    """recipes/vanillanet_test_mnist5k.yaml through the training engine, on a few fake images: the deep-training
    schedule reaches lambda = 1, and the trained model fuses exactly."""
    from frugalvision.train import engine
    from frugalvision.train.config import TrainConfig, load_recipe

    recipe = load_recipe(repo_root / "recipes" / "vanillanet_test_mnist5k.yaml")
    assert recipe["deep_training"] == {"decay_epochs": 2, "schedule": "linear"}
    config = TrainConfig.from_dict({**recipe, "dataset": "fake", "fake_size": 16, "batch_size": 8, "epochs": 3,
                                    "output": str(tmp_path), "eval_batch_size": 16})
    result = engine.train(config, log=None)
    assert [row["act_learn"] for row in result.history] == [0.0, 0.5, 1.0]
    trained = load_model(result.run_dir).eval()
    fused = reparameterize_model(trained)
    x = torch.randn(2, 3, 32, 32)
    assert fused.deploy and rel_err(fused(x), trained(x)) <= 1e-5


# ---- command line: deploy, bench model ----------------------------------------------------------------------
@pytest.mark.slow
def test_deploy_cli_fuses_and_exports_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from frugalvision.cli.main import main

    model = randomize_bn(create_model("vanillanet_test"))
    torch.save({"model": model.state_dict()}, tmp_path / "train.pth")
    argv = ["deploy", "--checkpoint", str(tmp_path / "train.pth"), "--model", "vanillanet_test",
            "--output", str(tmp_path / "fused.safetensors")]
    assert main(argv) == 0
    fused = load_model(tmp_path / "fused.safetensors")
    x = torch.randn(2, 3, 32, 32)
    assert fused.deploy and rel_err(fused(x), model(x)) <= 1e-5
    assert main(["deploy", "--checkpoint", str(tmp_path / "train.pth")]) == 2  # no --model, nothing to write
    pytest.importorskip("onnxruntime")
    onnx_path = str(tmp_path / "m.onnx")
    assert main(["deploy", "--checkpoint", str(tmp_path / "fused.safetensors"), "--onnx", onnx_path]) == 0
    assert "onnxruntime vs PyTorch" in capsys.readouterr().out


def test_layer_decay_groups_match_official() -> None:
    """timm's layer-wise decay on VanillaNet-6 widths/strides: stem 0.8^5, stage i 0.8^(4-i), head 1 (official)."""
    from timm.optim import param_groups_layer_decay

    model = VanillaNet(dims=[8, 8, 16, 16, 16], strides=_CFGS["vanillanet_6"]["strides"])
    groups = param_groups_layer_decay(model, weight_decay=0.32, layer_decay=0.8)
    scales = sorted({round(g["lr_scale"], 6) for g in groups})
    assert scales == [round(0.8**k, 6) for k in range(5, -1, -1)]
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(model.stages[0].act.weight) in decayed and id(model.stages[0].conv1[0].bias) not in decayed


# ---- recipes ------------------------------------------------------------------------------------------------------
README_RECIPES = {  # official README commands: lr, weight decay, mixup alpha, layer decay (rate, num_layers)
    "vanillanet_5": (3.5e-3, 0.35, 0.1, None), "vanillanet_6": (4.8e-3, 0.32, 0.15, (0.8, 4)),
    "vanillanet_7": (4.7e-3, 0.35, 0.4, (0.8, 5)), "vanillanet_8": (3.5e-3, 0.3, 0.4, None),
    "vanillanet_9": (3.5e-3, 0.3, 0.4, None), "vanillanet_10": (3.5e-3, 0.25, 0.4, None),
}


@pytest.mark.parametrize("name", sorted(README_RECIPES))
def test_imagenet_recipes_hold_the_published_values(name: str, repo_root: Path) -> None:
    import dataclasses

    import yaml

    from frugalvision.train.config import TrainConfig

    recipe = yaml.safe_load((repo_root / "recipes" / f"{name}.yaml").read_text())
    lr, wd, mixup, layer_decay = README_RECIPES[name]
    assert recipe["model"] == name and recipe["dataset"] == "imagenet"
    assert (recipe["epochs"], recipe["batch_size"], recipe["deep_training"]) == (
        300, 1024, {"decay_epochs": 100, "schedule": "linear"})
    assert recipe["optimizer"] == {"name": "lamb", "lr": lr, "weight_decay": wd}
    assert recipe["scheduler"] == {"name": "cosine", "warmup_epochs": 5, "min_lr": 1e-6}
    assert (recipe["ema"]["decay"], recipe["mixup"], recipe["cutmix"], recipe["label_smoothing"]) == (
        0.99996, mixup, 1.0, 0.1)
    assert recipe["model_kwargs"]["drop_rate"] == 0.05 and recipe["randaugment"] == "rand-m7-mstd0.5-inc1"
    assert recipe.get("layer_decay") == (None if layer_decay is None else dict(zip(("rate", "num_layers"),
                                                                                  layer_decay)))
    known = {f.name for f in dataclasses.fields(TrainConfig)} | {"optimizer", "scheduler", "ema"}
    assert set(recipe) <= known
