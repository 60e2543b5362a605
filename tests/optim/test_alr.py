"""Adaptive learning rate semantics (Chen et al., CVPR 2020, Eq. 12-13)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from frugalvision.layers import Adder2d
from frugalvision.optim import AdaptiveLR, adder_weights


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(Adder2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), Adder2d(4, 3, 1),
                         nn.BatchNorm2d(3), nn.Flatten(), nn.LazyLinear(5))


def _eval_net(x: torch.Tensor) -> nn.Module:
    """``_net`` in eval mode with BN statistics taken from ``x`` (momentum 1). With the default statistics (mean 0,
    variance 1) every adder output (about -20) stays negative through BN, the ReLU passes nothing and the first
    adder's gradient is exactly 0."""
    model = _net()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 1.0
    with torch.no_grad():
        model.train()(x)
    return model.eval()


def _batch(n: int = 8, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 5, 5, generator=gen), torch.randint(0, 5, (n,), generator=gen)


def _loss(model, x, y):
    return nn.functional.cross_entropy(model(x), y)


def _step(model, alr, optimizer, loss_fn):
    optimizer.zero_grad()
    loss_fn().backward()
    alr.apply()
    optimizer.step()


def test_update_rms_equals_eta_times_lr_for_plain_sgd():
    model = _net()
    x, y = _batch()
    model(x)  # materialise the lazy layer
    alr = AdaptiveLR(adder_weights(model), eta=0.2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    before = [w.detach().clone() for w in alr.params]
    _step(model, alr, optimizer, lambda: _loss(model, x, y))
    for w, w0 in zip(alr.params, before):
        rms = (w.detach() - w0).pow(2).mean().sqrt().item()
        assert rms == pytest.approx(0.2 * 0.05, rel=1e-5)


def test_update_is_invariant_to_grad_scaler():
    """Under AMP's GradScaler the update is the same as without it (ALR runs after unscale_)."""
    x, y = _batch()
    results = []
    for use_scaler in (False, True):
        model = _net()
        model(x)
        alr = AdaptiveLR(adder_weights(model))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, enabled=use_scaler)
        for _ in range(3):
            optimizer.zero_grad()
            scaler.scale(_loss(model, x, y)).backward()
            scaler.unscale_(optimizer)
            alr.apply()
            scaler.step(optimizer)
            scaler.update()
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adder_update_invariant_to_loss_scale():
    x, y = _batch()
    updates = []
    for scale in (1.0, 1000.0):
        model = _net()
        model(x)
        alr = AdaptiveLR(adder_weights(model))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        before = [w.detach().clone() for w in alr.params]
        _step(model, alr, optimizer, lambda model=model, scale=scale: _loss(model, x, y) * scale)
        updates.append([w.detach() - w0 for w, w0 in zip(alr.params, before)])
    for a, b in zip(*updates):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_official_mode_breaks_under_grad_scaler():
    """Per-backward normalisation happens before unscaling: the adder update shrinks by the scale (why 'alr')."""
    x, y = _batch()
    model = _net()
    model(x)
    alr = AdaptiveLR(adder_weights(model), mode="official")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    before = [w.detach().clone() for w in alr.params]
    scaler.scale(_loss(model, x, y)).backward()
    scaler.step(optimizer)
    rms = [(w.detach() - w0).pow(2).mean().sqrt().item() for w, w0 in zip(alr.params, before)]
    assert all(r == pytest.approx(0.2 * 0.1 / 1024, rel=1e-2) for r in rms)  # float32 weights ~1, steps ~2e-5


def test_gradient_accumulation_equals_one_big_batch():
    x, y = _batch(12)
    big = _eval_net(x)  # BN in eval mode: micro-batches and the full batch see the same normalisation
    alr_big = AdaptiveLR(adder_weights(big))
    opt_big = torch.optim.SGD(big.parameters(), lr=0.1)
    _step(big, alr_big, opt_big, lambda: _loss(big, x, y))

    acc = _eval_net(x)
    alr_acc = AdaptiveLR(adder_weights(acc))
    opt_acc = torch.optim.SGD(acc.parameters(), lr=0.1)
    opt_acc.zero_grad()
    for xs, ys in zip(x.split(4), y.split(4)):
        (_loss(acc, xs, ys) / 3).backward()
    alr_acc.apply()
    opt_acc.step()
    assert all(w.grad.norm() > 0.1 for w in alr_big.params)  # every adder layer has a (normalised) gradient
    for a, b in zip(alr_big.params, alr_acc.params):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_official_mode_normalises_each_backward():
    """Three backward calls accumulate three gradients each scaled to norm eta * sqrt(k) (computed here by hand
    from the plain gradients of the same three micro-batches), not one normalised sum."""
    x, y = _batch(12)
    plain = _eval_net(x)
    expected = [torch.zeros_like(w) for w in adder_weights(plain)]
    for xs, ys in zip(x.split(4), y.split(4)):
        grads = torch.autograd.grad(_loss(plain, xs, ys), adder_weights(plain))
        for total, g in zip(expected, grads):
            total += 0.2 * math.sqrt(g.numel()) * g / g.norm()
    model = _eval_net(x)
    alr = AdaptiveLR(adder_weights(model), mode="official")
    for xs, ys in zip(x.split(4), y.split(4)):
        _loss(model, xs, ys).backward()
    for w, want in zip(alr.params, expected):
        torch.testing.assert_close(w.grad, want, rtol=1e-5, atol=1e-7)
        assert w.grad.norm().item() != pytest.approx(0.2 * math.sqrt(w.numel()), rel=1e-3)  # not the "alr" result
    alr.remove()
    model.zero_grad()
    _loss(model, x, y).backward()  # without the hooks: the plain gradient again
    torch.testing.assert_close(alr.params[0].grad, torch.autograd.grad(_loss(plain, x, y), adder_weights(plain)[0])[0])


def test_ilr_gives_adder_weights_100x_lr_and_none_changes_nothing():
    model = _net()
    model(_batch()[0])
    alr = AdaptiveLR(adder_weights(model), mode="ilr")
    groups = alr.param_groups(model.parameters(), lr=0.01)
    assert [g["lr"] for g in groups] == [0.01, 1.0]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in adder_weights(model)}
    none = AdaptiveLR(adder_weights(model), mode="none")
    for w in none.params:
        w.grad = torch.ones_like(w)
    none.apply()
    assert all(torch.equal(w.grad, torch.ones_like(w)) for w in none.params)


def test_bad_mode_and_eta_are_refused():
    with pytest.raises(ValueError, match="unknown adaptive learning-rate mode"):
        AdaptiveLR([], mode="fast")
    with pytest.raises(ValueError, match="eta must be positive"):
        AdaptiveLR([], eta=0)
