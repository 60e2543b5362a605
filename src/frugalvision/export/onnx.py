"""ONNX export of any frugalvision model, AdderNet layers included, in the standard ONNX operator set.

No ONNX runtime implements AdderNet's operator, so ``frugalvision::adder2d`` is exported as an exact decomposition
into standard operators (AdderNet, Chen et al., CVPR 2020, arXiv 1912.13200, Eq. 2):

    Y[n, o, h, w] = - sum_{i, j} sum_c | X_pad[n, c, h*s + i*d, w*s + j*d] - W[o, c, i, j] |

one kernel tap (i, j) at a time::

    X_pad = Pad(X)                                          (N, C, Hp, Wp), zeros; skipped without padding
    X_g   = Unsqueeze(X_pad, 1)                             (N, 1, C, Hp, Wp)          groups = 1
          | Reshape(X_pad, [-1, G, 1, C/G, Hp, Wp])         (N, G, 1, C/G, Hp, Wp)     groups = G
    for each tap (i, j):
        T_ij = Slice(X_g, starts (i*d_h, j*d_w), steps (s_h, s_w))   (..., Ho, Wo), a strided window
        D_ij = Abs(Sub(T_ij, W[:, :, i, j] as (O, C, 1, 1) | (G, O/G, C/G, 1, 1)))   (N, O, C/G, Ho, Wo) broadcast
        S_ij = ReduceSum(D_ij, axis of C/G)                 (N, O, Ho, Wo) | (N, G, O/G, Ho, Wo)
    Y = Neg(pairwise sum of the S_ij) (+ bias), reshaped to (N, O, Ho, Wo) for groups > 1

Memory: the largest temporary is one tap's difference, ``N * O * (C/G) * Ho * Wo`` values (two such buffers at most:
Sub's output and Abs's), ``k*k`` times less than the im2col broadcast ``N * O * (C/G) * k*k * Ho * Wo`` of the
reference implementation; the running sums are output-sized. Per tap the graph holds one Slice, Sub, Abs, ReduceSum
and Add (ResNet-20: 800 nodes for the 164 taps of its 20 adder layers); each tap's weights are one constant
(together the size of the layer's weight). Every slice bound is a constant (spatial sizes are fixed at export; the
batch axis stays dynamic). ``Abs`` + ``ReduceSum`` rather than the equivalent ``ReduceL1``: onnxruntime 1.32 ran
the adder ResNet-20 about four times slower with ReduceL1. The taps are added pairwise (depth 4 for 3x3), which
rounds less than a sequential sum (official ResNet-20 vs float64: 7.4e-5 instead of 9.1e-5).

BatchNorm after an adder layer stays a ``BatchNormalization`` node (it cannot fold into the adder's weights).
Accuracy: the graph computes in float32 like PyTorch, in another summation order, so the two agree to float32
rounding, not bit for bit. For trained AdderNets that rounding is amplified: BatchNorm divides the adder output
(large, e.g. ~500) by a small spread, so the float32 storage of activations alone moves the logits by ~5e-5 of
their range (the official ResNet-20 on N(0, 1) inputs: PyTorch float32 vs float64 4.5e-5). Random-weight models
agree to ~1e-7.

The decomposition is registered as the TorchScript exporter's symbolic for ``frugalvision::adder2d``, so it covers
:class:`~frugalvision.layers.Adder2d` layers and direct calls of :func:`frugalvision.ops.adder2d` alike.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import ExportError, one_line
from ..run_dir import new_file_mode

__all__ = ["MAX_OPSET", "MIN_OPSET", "ExportError", "export_onnx", "register_onnx_symbolics", "relative_error"]

MIN_OPSET = 11  # Pad and Slice take their bounds as inputs from opset 11 (10 for Slice)
MAX_OPSET = 20  # the newest opset torch's TorchScript exporter writes


def relative_error(output: Tensor, reference: Tensor) -> float:
    """``max |output - reference| / max |reference|`` (the largest error relative to the output's scale)."""
    output, reference = output.detach(), reference.detach()
    return float((output - reference).abs().max() / reference.abs().max().clamp_min(1e-12))


# ---------------------------------------------------------------------------------------------------------- symbolic


def _const(g, values: list[int]):
    return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))


def _reduce_sum(g, x, axis: int):
    if g.opset >= 13:  # ReduceSum's axes became an input in opset 13
        return g.op("ReduceSum", x, _const(g, [axis]), keepdims_i=0)
    return g.op("ReduceSum", x, axes_i=[axis], keepdims_i=0)


def _pairwise_sum(g, terms: list):
    while len(terms) > 1:
        pairs = [g.op("Add", terms[k], terms[k + 1]) for k in range(0, len(terms) - 1, 2)]
        terms = pairs + terms[len(terms) - len(terms) % 2:]
    return terms[0]


def _adder2d_symbolic(g, input, weight, stride, padding, dilation, groups, sign_weight_grad):
    """ONNX graph of ``frugalvision::adder2d``: the per-tap decomposition of the module docstring.

    ``stride``, ``padding``, ``dilation`` arrive as int lists and ``groups`` as an int (``parse_args`` below).
    """
    in_sizes, w_sizes = input.type().varyingSizes(), weight.type().varyingSizes()  # None for a symbolic size
    if in_sizes is None or w_sizes is None or None in in_sizes[1:] or None in w_sizes:
        raise ExportError("adder2d export needs static channel and spatial sizes (only the batch axis may vary)")
    height, width = in_sizes[2:]
    out_channels, group_channels, kh, kw = w_sizes
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    hp, wp = height + 2 * ph, width + 2 * pw
    out_h, out_w = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1

    x = input
    if ph or pw:  # zero padding: padded positions take part as x = 0 and contribute |w|
        x = g.op("Pad", x, _const(g, [0, 0, ph, pw, 0, 0, ph, pw]), mode_s="constant")
    if groups == 1:
        # (N, 1, C, Hp, Wp); Unsqueeze's axes became an input in opset 13
        x = g.op("Unsqueeze", x, _const(g, [1])) if g.opset >= 13 else g.op("Unsqueeze", x, axes_i=[1])
        w_shape, reduce_axis = [out_channels, group_channels, 1, 1], 2
    else:
        x = g.op("Reshape", x, _const(g, [-1, groups, 1, group_channels, hp, wp]))  # (N, G, 1, C/G, Hp, Wp)
        w_shape, reduce_axis = [groups, out_channels // groups, group_channels, 1, 1], 3
    terms = []
    for i in range(kh):
        for j in range(kw):
            starts = [i * dh, j * dw]
            ends = [i * dh + sh * (out_h - 1) + 1, j * dw + sw * (out_w - 1) + 1]
            tap = g.op("Slice", x, _const(g, starts), _const(g, ends), _const(g, [-2, -1]), _const(g, [sh, sw]))
            # W[:, :, i, j]; constant folding turns this Slice + Reshape of the weight into one initializer.
            w_tap = g.op("Slice", weight, _const(g, [i, j]), _const(g, [i + 1, j + 1]), _const(g, [2, 3]))
            w_tap = g.op("Reshape", w_tap, _const(g, w_shape))
            terms.append(_reduce_sum(g, g.op("Abs", g.op("Sub", tap, w_tap)), reduce_axis))
    out = g.op("Neg", _pairwise_sum(g, terms))
    if groups > 1:
        out = g.op("Reshape", out, _const(g, [-1, out_channels, out_h, out_w]))
    return out


_REGISTERED = False


def register_onnx_symbolics() -> None:
    """Registers the standard-operator export of ``frugalvision::adder2d`` with torch's TorchScript exporter.

    Idempotent; :func:`export_onnx` calls it. Needed only to call ``torch.onnx.export(..., dynamo=False)`` directly.
    """
    global _REGISTERED
    if not _REGISTERED:
        from torch.onnx.symbolic_helper import parse_args

        from .. import ops  # noqa: F401  (defines the operator)

        symbolic = parse_args("v", "v", "is", "is", "is", "i", "b")(_adder2d_symbolic)
        torch.onnx.register_custom_op_symbolic("frugalvision::adder2d", symbolic, MIN_OPSET)
        _REGISTERED = True


# ------------------------------------------------------------------------------------------------------------ export


@contextlib.contextmanager
def _quiet_stdout():
    """Sends the process's standard output (file descriptor 1) to /dev/null.

    torch's TorchScript exporter switches its C++ ONNX log on and never off (torch 2.14 ``setup_onnx_logging``
    tests the function object ``_jit_is_onnx_log_enabled`` instead of calling it), so a failing export prints the
    whole TorchScript graph to stdout before raising. The error we raise instead is one line.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        torch._C._jit_set_onnx_log_enabled(False)


def _check_graph(path: Path) -> None:
    import onnx

    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported graph is not valid ONNX: {one_line(exc, with_type=True)}") from None
    custom = sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if custom:
        raise ExportError(f"the exported graph uses operators outside the standard ONNX set: {', '.join(custom)}")


def _verify(path: Path, model: nn.Module, example: Tensor) -> float | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    # One more sample than the export example: the batch axis must really be dynamic.
    batch = torch.cat([example, example[:1]]).detach().cpu()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    rejected = (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.InvalidArgument, ort_errors.NotImplemented,
                ort_errors.RuntimeException)  # onnxruntime's own types (not RuntimeError) for a graph it cannot run
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        (onnx_out,) = session.run(None, {session.get_inputs()[0].name: batch.numpy()})
    except rejected as exc:
        raise ExportError(f"onnxruntime cannot run the exported model: {one_line(exc, with_type=True)}") from None
    device = next(model.parameters(), torch.empty(0)).device
    with torch.no_grad():
        reference = model(batch.to(device)).float().cpu()
    return relative_error(torch.from_numpy(onnx_out), reference)


def export_onnx(model: nn.Module, path: str | Path, example: Tensor, opset: int = 17, *,
                tolerance: float | None = None) -> float | None:
    """Exports ``model`` (in eval mode) to an ONNX file in the standard operator set, with a dynamic batch axis.

    Adder layers become the decomposition of the module docstring; every other layer uses torch's exporter. The file
    is written atomically (a temporary file renamed at the end), so a failed export leaves nothing behind.

    Args:
        model: any frugalvision model (fused or not) or ``nn.Module``; exported in eval mode.
        path: the ``.onnx`` file to write (folders are created).
        example: an example input batch (N, C, H, W); its channel and spatial sizes are fixed in the graph.
        opset: ONNX opset, between :data:`MIN_OPSET` and :data:`MAX_OPSET`.
        tolerance: when given, fail (and write nothing) if onnxruntime's output differs from PyTorch's by more.

    Returns:
        onnxruntime's relative error against PyTorch on ``example`` plus one more sample, or ``None`` when
        onnxruntime is not installed (the graph is still checked with ``onnx.checker``).

    Raises:
        ExportError: (one line) missing ``onnx`` package, unsupported opset or layer, a graph onnxruntime rejects,
            or an error above ``tolerance``.
    """
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise ExportError("ONNX export needs the optional dependencies: pip install 'frugalvision[export]'") from None
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported; choose {MIN_OPSET}..{MAX_OPSET}")
    if not isinstance(example, Tensor) or example.dim() != 4:
        shape = tuple(example.shape) if isinstance(example, Tensor) else type(example).__name__
        raise ExportError(f"the example input must be a 4-D (N, C, H, W) tensor, got {shape}")
    register_onnx_symbolics()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    handle, tmp_name = tempfile.mkstemp(suffix=".onnx", prefix=f".{path.stem}-", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        try:
            with warnings.catch_warnings(), torch.no_grad(), _quiet_stdout():
                warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but needs no onnxscript
                torch.onnx.export(model, (example,), str(tmp), input_names=["input"], output_names=["logits"],
                                  opset_version=opset, dynamo=False,
                                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        except torch.onnx.errors.OnnxExporterError as exc:  # a layer without an ONNX form (UnsupportedOperatorError)
            reason = one_line(exc, with_type=True)
            raise ExportError(f"ONNX export of {type(model).__name__} failed: {reason}") from None
        _check_graph(tmp)
        error = _verify(tmp, model, example)
        if tolerance is not None and error is not None and error > tolerance:
            raise ExportError(f"the ONNX model differs from PyTorch: relative error {error:.2e} > {tolerance:g}")
        os.chmod(tmp, new_file_mode())  # mkstemp made it private
        os.replace(tmp, path)
        return error
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        model.train(was_training)
