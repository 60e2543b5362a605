"""The released AdderNet ResNet-20 (huawei-noah/AdderNet, ``ResNet20-AdderNet.pth``) gives the official logits.

The reference logits in ``data/official_resnet20_logits.safetensors`` were computed by :func:`official_forward`
below, an independent float64 transcription of the official ``resnet20.py`` / ``adder.py`` forward pass
(unfold, broadcast ``-|X_col - W|`` sum, BatchNorm in eval mode), on four fixed input images stored in the same
file. Regenerate with ``python tests/models/test_official_resnet20.py``.

The checkpoint is shared data (``../shared/data/official/``, not in the repository): without it these tests skip
on a user's clone and fail in CI (see tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from frugalvision import create_model
from frugalvision.models import read_state_dict
from frugalvision.models.resnet import official_state_dict

CHECKPOINT = "official/ResNet20-AdderNet.pth"  # under ../shared/data
REFERENCE = Path(__file__).resolve().parent / "data/official_resnet20_logits.safetensors"


@pytest.fixture
def checkpoint(shared_data) -> Path:
    return shared_data(CHECKPOINT)


def _official_adder(x: Tensor, w: Tensor, stride: int, padding: int) -> Tensor:
    """adder.py: im2col with zero padding, then -sum_k |X_col - W| (padded zeros contribute |w|)."""
    n, _, h, width = x.shape
    cout, _, k, _ = w.shape
    h_out, w_out = (h - k + 2 * padding) // stride + 1, (width - k + 2 * padding) // stride + 1
    x_col = F.unfold(x, k, padding=padding, stride=stride)  # (N, C*k*k, H_out*W_out)
    diff = x_col[:, None, :, :] - w.reshape(cout, -1)[None, :, :, None]  # (N, C_out, C*k*k, H_out*W_out)
    return -diff.abs().sum(2).reshape(n, cout, h_out, w_out)


def _bn(x: Tensor, sd: dict[str, Tensor], name: str) -> Tensor:
    shape = (1, -1, 1, 1)
    scale = sd[f"{name}.weight"] / torch.sqrt(sd[f"{name}.running_var"] + 1e-5)
    return (x - sd[f"{name}.running_mean"].reshape(shape)) * scale.reshape(shape) + sd[f"{name}.bias"].reshape(shape)


def official_forward(x: Tensor, sd: dict[str, Tensor]) -> Tensor:
    """resnet20.py in eval mode: conv stem, 3 stages x 3 BasicBlocks of adders (adder 1x1 downsample), avg-pool 8,
    1x1 conv fc and BatchNorm on the logits. ``sd`` holds the official keys without ``module.``."""
    out = F.relu(_bn(F.conv2d(x, sd["conv1.weight"], padding=1), sd, "bn1"))
    for stage in (1, 2, 3):
        for block in range(3):
            p = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            y = F.relu(_bn(_official_adder(out, sd[f"{p}.conv1.adder"], stride, 1), sd, f"{p}.bn1"))
            y = _bn(_official_adder(y, sd[f"{p}.conv2.adder"], 1, 1), sd, f"{p}.bn2")
            if f"{p}.downsample.0.adder" in sd:
                out = _bn(_official_adder(out, sd[f"{p}.downsample.0.adder"], stride, 0), sd, f"{p}.downsample.1")
            out = F.relu(y + out)
    out = F.avg_pool2d(out, 8)  # (N, 64, 1, 1)
    return _bn(F.conv2d(out, sd["fc.weight"]), sd, "bn2").flatten(1)  # (N, 10, 1, 1) -> (N, 10)


def _official_state(checkpoint: Path, dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return {k.removeprefix("module."): v.to(dtype) if v.is_floating_point() else v for k, v in raw.items()}


def _rel_max_err(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def test_official_checkpoint_logits_match_reference(checkpoint: Path) -> None:
    ref = load_file(str(REFERENCE))
    model = create_model("resnet20", conv_type="adder", checkpoint_path=checkpoint).eval()
    with torch.no_grad():
        logits32 = model(ref["input"])
        logits64 = model.double()(ref["input"].double())
    assert logits32.dtype == torch.float32
    err32, err64 = _rel_max_err(logits32, ref["logits"]), _rel_max_err(logits64, ref["logits"])
    print(f"official ResNet-20 logits: rel. max error float32 {err32:.2e}, float64 {err64:.2e}")
    assert err32 <= 1e-4
    assert err64 <= 1e-10
    assert torch.equal(logits32.argmax(1), ref["logits"].argmax(1))


def test_stored_logits_are_the_independent_official_forward(checkpoint: Path) -> None:
    ref = load_file(str(REFERENCE))
    x = ref["input"][:1].double()
    assert _rel_max_err(official_forward(x, _official_state(checkpoint)), ref["logits"][:1]) < 1e-12


def test_official_checkpoint_is_read_on_cpu_without_module_prefix(checkpoint: Path) -> None:
    state = read_state_dict(checkpoint)  # torch.load(weights_only=True, map_location="cpu")
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert len(state) == len(raw) == 132
    assert all(t.device.type == "cpu" for t in state.values())
    assert all(torch.equal(state[k.removeprefix("module.")], v) for k, v in raw.items())
    assert "layer1.0.conv1.adder" in state and "layer2.0.downsample.0.adder" in state


def test_official_layout_round_trip_gives_the_file_back(checkpoint: Path) -> None:
    model = create_model("resnet20", conv_type="adder", checkpoint_path=checkpoint)
    official = official_state_dict(model)
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert set(official) == set(raw)
    assert all(torch.equal(official[k], v) for k, v in raw.items())


def _regenerate(checkpoint: Path) -> None:
    generator = torch.Generator().manual_seed(20200614)
    x = torch.randn(4, 3, 32, 32, generator=generator)  # roughly CIFAR-normalised images
    logits = official_forward(x.double(), _official_state(checkpoint))
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    save_file({"input": x.contiguous(), "logits": logits.contiguous()}, str(REFERENCE),
              metadata={"source": "tests/models/test_official_resnet20.py official_forward, float64",
                        "checkpoint": "huawei-noah/AdderNet ResNet20-AdderNet.pth (1,121,093 bytes)"})
    print(logits)


if __name__ == "__main__":
    _regenerate(Path(__file__).resolve().parents[3] / "shared" / "data" / CHECKPOINT)  # tests/conftest.py SHARED_DATA
