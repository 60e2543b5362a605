"""VanillaNet: a shallow network without shortcuts, trained deep and fused shallow.

Paper: Hanting Chen, Yunhe Wang, Jianyuan Guo, Dacheng Tao, "VanillaNet: the Power of Minimalism in Deep Learning",
NeurIPS 2023, arXiv 2305.12972. Module and parameter names follow the official release
(github.com/huawei-noah/VanillaNet, ``models/vanillanet.py``) so that its train-mode and deploy-mode state dicts load
unchanged; the code here is an independent implementation.

Train-mode structure (every BN has eps 1e-6; ``lam`` is the deep-training coefficient, paper Eq. 1)::

    stem1: conv4x4/s4 + BN -> leaky_relu(lam) -> stem2: conv1x1 + BN + SeriesActivation
    block: conv1 (1x1 + BN) -> leaky_relu(lam) -> conv2 (1x1 + BN) -> max-pool(stride) -> SeriesActivation
    head:  cls1 (avg-pool -> dropout -> 1x1 conv + BN) -> leaky_relu(lam) -> cls2 (1x1 conv)

Deploy structure (after :meth:`VanillaNet.switch_to_deploy`, exact at ``lam = 1``)::

    stem: conv4x4/s4 + SeriesActivation;  block: conv1x1 -> max-pool -> SeriesActivation;  cls: pool, dropout, conv1x1

``lam`` is stored once, as the model's float ``act_learn`` (``set_act_learn``), and handed to the blocks at every
forward. It travels in state dicts as the model's extra state (key ``_extra_state``, a 0-d tensor), so checkpoints
record it and ``--resume`` continues with the right value. Official checkpoints lack it (the official code keeps a
float per block); their filter sets it to 1, what they were released with.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..data import dataset_info
from ..errors import CheckpointError, ConfigError
from ..layers.activations import BN_EPS, SeriesActivation, deep_training_act
from ..layers.reparam import fold_bn, merge_1x1_after, to_conv
from .checkpoint import check_state_dict_fits
from .registry import register_model

__all__ = ["VanillaBlock", "VanillaNet", "official_checkpoint_filter"]

# default data configs (see .registry): the data the recipes and released weights use
# official evaluation (ConvNeXt-style main.py): resize to 224 / 0.875 with bicubic interpolation, centre crop 224
_IMAGENET = dataset_info("imagenet").data_config().replace(interpolation="bicubic")
_CIFAR10 = dataset_info("cifar10").data_config()

SHORTCUTS = (None, "before", "after")
_LAMBDA_KEY = "_extra_state"  # state-dict key of lam (nn.Module's extra state, see VanillaNet.get_extra_state)


def _conv_bn(in_chans: int, out_chans: int, kernel: int = 1, stride: int = 1, padding: int = 0) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_chans, out_chans, kernel, stride=stride, padding=padding),
                         nn.BatchNorm2d(out_chans, eps=BN_EPS))


def _check_lambda(act_learn: float, where: str) -> None:
    if act_learn != 1.0:
        raise ConfigError(
            f"cannot fuse {where} at act_learn={act_learn:g}: the two convs around the deep-training activation "
            "merge exactly only at act_learn = 1 (finish the decay, or call set_act_learn(1.0) knowingly)"
        )


class VanillaBlock(nn.Module):
    """One VanillaNet stage: 1x1 conv (two of them while training), pooling, series-informed activation.

    Args:
        dim: input channels.
        dim_out: output channels.
        act_num: n of the series activation (kernel 2n+1).
        stride: max-pool size after the convs (1 = no pooling).
        deploy: build the fused single-conv form.
        ada_pool: for stride > 1, an adaptive max-pool to this output size instead of ``MaxPool2d(stride)``
            (the 13-1.5x-dagger variant).
        shortcut: ablation only (paper Sec. 4.1: shortcuts do not help): ``"before"`` adds a shortcut before the
            series activation, ``"after"`` after it; identity when the shape is kept, else pool + 1x1 conv + BN.
            Models with shortcuts cannot be fused.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        act_num: int = 3,
        stride: int = 1,
        deploy: bool = False,
        ada_pool: int | None = None,
        shortcut: str | None = None,
    ) -> None:
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ConfigError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        self.deploy, self.shortcut = deploy, shortcut
        if deploy:
            self.conv = nn.Conv2d(dim, dim_out, 1)
        else:
            self.conv1 = _conv_bn(dim, dim)
            self.conv2 = _conv_bn(dim, dim_out)
        if stride == 1:
            self.pool: nn.Module = nn.Identity()
        elif ada_pool:
            self.pool = nn.AdaptiveMaxPool2d((ada_pool, ada_pool))
        else:
            self.pool = nn.MaxPool2d(stride)
        self.act = SeriesActivation(dim_out, act_num, deploy=deploy)
        if shortcut is not None and (dim != dim_out or stride != 1):
            self.proj: nn.Module | None = nn.Sequential(copy.deepcopy(self.pool), *_conv_bn(dim, dim_out))
        else:
            self.proj = None

    def forward(self, x: Tensor, act_learn: float = 1.0) -> Tensor:
        """``act_learn``: the deep-training coefficient lam of the enclosing VanillaNet (ignored once fused)."""
        identity = x
        if self.deploy:
            x = self.conv(x)
        else:
            x = self.conv2(deep_training_act(self.conv1(x), act_learn))
        x = self.pool(x)
        if self.shortcut is None:
            return self.act(x)
        residual = identity if self.proj is None else self.proj(identity)
        if self.shortcut == "before":
            return self.act(x + residual)
        return self.act(x) + residual

    @torch.no_grad()
    def switch_to_deploy(self, act_learn: float = 1.0) -> None:
        """Fold both BNs, merge the two 1x1 convs, fold the activation's BN (in place; exact at act_learn = 1)."""
        if self.deploy:
            return
        if self.shortcut is not None:
            raise ConfigError("blocks with shortcuts (an ablation) cannot be fused into the plain deploy form")
        _check_lambda(act_learn, "a VanillaBlock")
        w1, b1 = fold_bn(self.conv1[0].weight, self.conv1[0].bias, self.conv1[1])
        w2, b2 = fold_bn(self.conv2[0].weight, self.conv2[0].bias, self.conv2[1])
        self.conv = to_conv(*merge_1x1_after(w1, b1, w2, b2), like=self.conv1[0])
        del self.conv1, self.conv2
        self.act.switch_to_deploy()
        self.deploy = True


class VanillaNet(nn.Module):
    """VanillaNet (arXiv 2305.12972) with the official module names.

    Args:
        dims: channel widths: stem output, then the output of each block.
        strides: pooling stride of each block (``len(dims) - 1`` entries).
        num_classes: classifier outputs.
        in_chans: input channels.
        drop_rate: dropout before the classifier (0.05 in the published recipes).
        act_num: n of every series activation (3 in the paper; the ablation covers 0..4).
        deploy: build the fused form directly (to load deploy-mode checkpoints).
        ada_pool: per block, the adaptive max-pool size (0 = fixed pooling); when given, the stem uses stride 3
            and padding 1 (the 13-1.5x-dagger variant).
        shortcut: ablation switch for every block (see :class:`VanillaBlock`).
    """

    def __init__(
        self,
        dims: Sequence[int],
        strides: Sequence[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        act_num: int = 3,
        deploy: bool = False,
        ada_pool: Sequence[int] | None = None,
        shortcut: str | None = None,
    ) -> None:
        super().__init__()
        if len(strides) != len(dims) - 1:
            raise ConfigError(f"need one stride per block: {len(dims) - 1} blocks, got {len(strides)} strides")
        if ada_pool is not None and len(ada_pool) != len(strides):
            raise ConfigError(f"ada_pool needs one entry per block ({len(strides)}), got {len(ada_pool)}")
        self.arch_args: dict[str, Any] = dict(
            dims=list(dims), strides=list(strides), num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
            act_num=act_num, ada_pool=None if ada_pool is None else list(ada_pool), shortcut=shortcut)
        self.num_classes, self.num_features, self.deploy = num_classes, dims[-1], deploy
        self.default_input_size = (in_chans, 224, 224)  # ImageNet resolution of the paper
        stem_stride, stem_pad = (3, 1) if ada_pool is not None else (4, 0)
        if deploy:
            self.stem = nn.Sequential(nn.Conv2d(in_chans, dims[0], 4, stride=stem_stride, padding=stem_pad),
                                      SeriesActivation(dims[0], act_num, deploy=True))
        else:
            self.stem1 = _conv_bn(in_chans, dims[0], 4, stride=stem_stride, padding=stem_pad)
            self.stem2 = nn.Sequential(*_conv_bn(dims[0], dims[0]), SeriesActivation(dims[0], act_num))
        self.stages = nn.ModuleList(
            VanillaBlock(dims[i], dims[i + 1], act_num=act_num, stride=strides[i], deploy=deploy,
                         ada_pool=ada_pool[i] if ada_pool is not None else None, shortcut=shortcut)
            for i in range(len(strides))
        )
        head = [nn.AdaptiveAvgPool2d((1, 1)), nn.Dropout(drop_rate), nn.Conv2d(dims[-1], num_classes, 1)]
        if deploy:
            self.cls = nn.Sequential(*head)
        else:
            self.cls1 = nn.Sequential(*head, nn.BatchNorm2d(num_classes, eps=BN_EPS))
            self.cls2 = nn.Sequential(nn.Conv2d(num_classes, num_classes, 1))
        self.act_learn = 1.0  # the deep-training coefficient lam, stored only here (see the module docstring)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        from timm.layers import trunc_normal_  # here, not at the top: timm imports torchvision (seconds)

        if isinstance(module, (nn.Conv2d, nn.Linear)):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Parameter groups for timm's layer-wise LR decay: stem = 0, block i = i + 1, head = last (as official)."""
        return {"stem": r"^stem", "blocks": r"^stages\.(\d+)"}

    # ---- deep training -------------------------------------------------------------------------------------
    def get_act_learn(self) -> float:
        """The deep-training coefficient lam (1 for deploy models)."""
        return self.act_learn

    @torch.no_grad()
    def set_act_learn(self, value: float) -> None:
        """Set lam of the stem, every block and the head (paper Eq. 1; 0 = ReLU, 1 = identity)."""
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"act_learn must lie in [0, 1], got {value}")
        if self.deploy:
            if value != 1.0:
                raise ConfigError("a deploy (fused) VanillaNet has no deep-training activation; act_learn is fixed "
                                  "at 1")
            return
        self.act_learn = value

    def get_extra_state(self) -> Tensor:
        """lam as a 0-d tensor: what state dicts and checkpoints carry (``_extra_state``)."""
        return torch.tensor(self.act_learn, dtype=torch.float64)

    def set_extra_state(self, state: Tensor) -> None:
        self.set_act_learn(float(state))

    # ---- forward -------------------------------------------------------------------------------------------
    def forward_features(self, x: Tensor) -> Tensor:
        act_learn = self.get_act_learn()  # read once per forward (a device sync on GPUs), handed to every block
        if self.deploy:
            x = self.stem(x)
        else:
            x = self.stem2(deep_training_act(self.stem1(x), act_learn))
        for stage in self.stages:
            x = stage(x, act_learn)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        if self.deploy:
            x = self.cls(x)
        else:
            x = self.cls2(deep_training_act(self.cls1(x), self.get_act_learn()))
        return x.flatten(1)  # (N, classes, 1, 1) -> (N, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    # ---- deploy --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fuse in place into the deploy structure (stem 4x4 conv, one 1x1 conv per block, one head conv).

        Raises:
            ValueError: when act_learn != 1 (the fusion would change the function) or blocks have shortcuts.
        """
        if self.deploy:
            return
        act_learn = self.get_act_learn()
        _check_lambda(act_learn, "VanillaNet")
        if self.arch_args["shortcut"] is not None:
            raise ConfigError("VanillaNet with shortcuts (an ablation) cannot be fused into the plain deploy form")
        w1, b1 = fold_bn(self.stem1[0].weight, self.stem1[0].bias, self.stem1[1])
        w2, b2 = fold_bn(self.stem2[0].weight, self.stem2[0].bias, self.stem2[1])
        stem_conv = to_conv(*merge_1x1_after(w1, b1, w2, b2), like=self.stem1[0])
        act = self.stem2[2]
        act.switch_to_deploy()
        self.stem = nn.Sequential(stem_conv, act)
        for stage in self.stages:
            stage.switch_to_deploy(act_learn)
        w1, b1 = fold_bn(self.cls1[2].weight, self.cls1[2].bias, self.cls1[3])
        cls2 = self.cls2[0]
        head_conv = to_conv(*merge_1x1_after(w1, b1, cls2.weight, cls2.bias), like=self.cls1[2])
        self.cls = nn.Sequential(self.cls1[0], self.cls1[1], head_conv)
        del self.stem1, self.stem2, self.cls1, self.cls2
        self.deploy = True


# ---- checkpoints -------------------------------------------------------------------------------------------
def official_checkpoint_filter(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Official state dicts use our key names already; add lam (=1) and fuse train-mode weights for deploy models."""
    if not isinstance(model, VanillaNet):
        return state
    state = dict(state)
    legacy_lam = state.pop("act_learn", None)  # frugalvision files written when lam was a buffer
    state.setdefault(_LAMBDA_KEY, torch.tensor(1.0, dtype=torch.float64) if legacy_lam is None else legacy_lam)
    is_train_state = "stem1.0.weight" in state
    if model.deploy and is_train_state:
        # a train-mode checkpoint into a deploy model: load it into a train-mode twin and fuse
        twin = VanillaNet(**model.arch_args, deploy=False)
        check_state_dict_fits(state, twin.state_dict(), "its train-mode weights do not fit the train-mode twin")
        twin.load_state_dict(state, strict=True)
        twin.eval().switch_to_deploy()
        return twin.state_dict()
    if not model.deploy and not is_train_state and "stem.0.weight" in state:
        raise CheckpointError("it holds the fused (deploy) form (stem.0.weight, no stem1); build it with "
                              "deploy=True (--model-option deploy=true)")
    return state


# ---- variants ----------------------------------------------------------------------------------------------
def _widths(*multiples: int, scale: int = 4) -> list[int]:
    return [128 * m * scale for m in multiples]


_CFGS: dict[str, dict[str, Any]] = {
    "vanillanet_5": dict(dims=_widths(1, 2, 4, 8), strides=[2, 2, 2]),
    "vanillanet_6": dict(dims=_widths(1, 2, 4, 8, 8), strides=[2, 2, 2, 1]),
    "vanillanet_7": dict(dims=_widths(1, 1, 2, 4, 8, 8), strides=[1, 2, 2, 2, 1]),
    "vanillanet_8": dict(dims=_widths(1, 1, 2, 4, 4, 8, 8), strides=[1, 2, 2, 1, 2, 1]),
    "vanillanet_9": dict(dims=_widths(1, 1, 2, 4, 4, 4, 8, 8), strides=[1, 2, 2, 1, 1, 2, 1]),
    "vanillanet_10": dict(dims=_widths(1, 1, 2, *[4] * 4, 8, 8), strides=[1, 2, 2, 1, 1, 1, 2, 1]),
    "vanillanet_11": dict(dims=_widths(1, 1, 2, *[4] * 5, 8, 8), strides=[1, 2, 2, 1, 1, 1, 1, 2, 1]),
    "vanillanet_12": dict(dims=_widths(1, 1, 2, *[4] * 6, 8, 8), strides=[1, 2, 2, 1, 1, 1, 1, 1, 2, 1]),
    "vanillanet_13": dict(dims=_widths(1, 1, 2, *[4] * 7, 8, 8), strides=[1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1]),
    "vanillanet_13_x1_5": dict(dims=_widths(1, 1, 2, *[4] * 7, 8, 8, scale=6),
                               strides=[1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1]),
    "vanillanet_13_x1_5_ada_pool": dict(dims=_widths(1, 1, 2, *[4] * 7, 8, 8, scale=6),
                                        strides=[1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1],
                                        ada_pool=[0, 38, 19, 0, 0, 0, 0, 0, 0, 10, 0]),
    # not in the paper: a few-thousand-parameter model for tests and the CPU smoke recipe
    "vanillanet_test": dict(dims=[16, 24, 32], strides=[2, 2], act_num=1, num_classes=10),
}


def _create(name: str, **kwargs: Any) -> VanillaNet:
    return VanillaNet(**{**_CFGS[name], **kwargs})


@register_model(checkpoint_filter=official_checkpoint_filter, data_config=_IMAGENET)
def vanillanet_5(**kwargs: Any) -> VanillaNet:
    """VanillaNet-5: 3 blocks, 15.52M params / 5.16 GMACs deployed, 72.49 % ImageNet top-1."""
    return _create("vanillanet_5", **kwargs)


@register_model(checkpoint_filter=official_checkpoint_filter, data_config=_IMAGENET)
def vanillanet_6(**kwargs: Any) -> VanillaNet:
    """VanillaNet-6: 4 blocks, 32.51M / 5.99 GMACs, 76.36 %."""
    return _create("vanillanet_6", **kwargs)


@register_model(checkpoint_filter=official_checkpoint_filter, data_config=_IMAGENET)
def vanillanet_7(**kwargs: Any) -> VanillaNet:
    """VanillaNet-7: 5 blocks, 32.80M / 6.89 GMACs, 77.98 %."""
    return _create("vanillanet_7", **kwargs)


@register_model(checkpoint_filter=official_checkpoint_filter, data_config=_IMAGENET)
def vanillanet_8(**kwargs: Any) -> VanillaNet:
    """VanillaNet-8: 6 blocks, 37.10M / 7.74 GMACs, 79.13 %."""
    return _create("vanillanet_8", **kwargs)


@register_model(checkpoint_filter=official_checkpoint_filter, data_config=_IMAGENET)
def vanillanet_9(**kwargs: Any) -> VanillaNet:
    """VanillaNet-9: 7 blocks, 41.40M / 8.58 GMACs, 79.87 %."""
    return _create("vanillanet_9", **kwargs)


@register_model(checkpoint_filter=official_checkpoint_filter, data_config=_IMAGENET)
def vanillanet_10(**kwargs: Any) -> VanillaNet:
    """VanillaNet-10: 8 blocks, 45.69M / 9.42 GMACs, 80.57 %."""
    return _create("vanillanet_10", **kwargs)


@register_model(checkpoint_filter=official_checkpoint_filter, data_config=_IMAGENET)
def vanillanet_11(**kwargs: Any) -> VanillaNet:
    """VanillaNet-11: 9 blocks, 49.99M / 10.26 GMACs, 81.08 %."""
    return _create("vanillanet_11", **kwargs)


@register_model(checkpoint_filter=official_checkpoint_filter, data_config=_IMAGENET)
def vanillanet_12(**kwargs: Any) -> VanillaNet:
    """VanillaNet-12: 10 blocks, 54.29M / 11.10 GMACs, 81.55 %."""
    return _create("vanillanet_12", **kwargs)


@register_model(checkpoint_filter=official_checkpoint_filter, data_config=_IMAGENET)
def vanillanet_13(**kwargs: Any) -> VanillaNet:
    """VanillaNet-13: 11 blocks, 58.59M / 11.94 GMACs, 82.05 %."""
    return _create("vanillanet_13", **kwargs)


@register_model(checkpoint_filter=official_checkpoint_filter, data_config=_IMAGENET)
def vanillanet_13_x1_5(**kwargs: Any) -> VanillaNet:
    """VanillaNet-13 with 1.5x widths: 127.80M / 26.55 GMACs, 82.53 %."""
    return _create("vanillanet_13_x1_5", **kwargs)


@register_model(checkpoint_filter=official_checkpoint_filter, data_config=_IMAGENET)
def vanillanet_13_x1_5_ada_pool(**kwargs: Any) -> VanillaNet:
    """VanillaNet-13-1.5x-dagger: stem stride 3 and adaptive max-pools (75/38/19/10 maps): 127.80M / 48.98 GMACs,
    83.11 %. The adaptive pools fix the map sizes whatever the input resolution."""
    return _create("vanillanet_13_x1_5_ada_pool", **kwargs)


@register_model(checkpoint_filter=official_checkpoint_filter, data_config=_CIFAR10)
def vanillanet_test(**kwargs: Any) -> VanillaNet:
    """A tiny VanillaNet (widths 16/24/32, act_num 1, 10 classes) for tests and smoke runs; not from the paper."""
    model = _create("vanillanet_test", **kwargs)
    model.default_input_size = (model.arch_args["in_chans"], 32, 32)
    return model
