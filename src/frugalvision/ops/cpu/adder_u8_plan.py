"""One compiled call per forward: a numba driver that runs a table of integer steps (adder layers, max-pools) on
uint8 channels-last buffers, calling the SAD kernels of :mod:`.adder_u8_numba` directly.

A numba call from Python types every argument and passes through the dispatcher (~0.3 us per array argument, more
with many arguments); a call from one compiled function to another is a plain function call. The driver
:func:`run_steps` therefore takes a whole network's integer part as a few arrays and calls the per-layer kernels
itself, so that a forward pays one dispatch instead of one per layer (plus the ``torch.library`` and Python layers
around each).

The step table (built by :mod:`frugalvision.quant.plan`) has one int64 row per step (:data:`STEP_FIELDS`):

* ``kind``: :data:`STEP_ADDER` (``frugalvision::adder2d_u8`` with its fused epilogue), :data:`STEP_MAX_POOL`
  (max-pool of a uint8 (N, H, W, C) map; max commutes with the monotone quantiser, so it stays exact),
  :data:`STEP_PATCHES` (the patch rows of a one-channel map, see :func:`_patches_u8`), :data:`STEP_CONV_STEM`
  (the float stem's convolution and the input quantiser, from the float32 image, see :func:`_conv_stem_u8`) or
  :data:`STEP_QUANTIZE` (the input quantiser alone, see :func:`_quantize_u8`);
* where the step's input, output and residual (a stem step: its scratch) lie: a buffer (:data:`BUFFER_INPUT` the
  input of the plan, uint8 or the float32 image, :data:`BUFFER_OUTPUT` the plan's result, :data:`BUFFER_ARENA`
  the scratch bytes for the activations in between), a byte offset and a length;
* for an adder step, where its packed weights (uint8, (G, B, S, 8, 8)) and its scale and bias vectors (float32,
  each ``G * 8B`` long) lie in the plan's weight, scale and bias arrays; for a stem step, where its float32 weights
  ((C, kh, kw, O8), O8 the output channels padded to a multiple of 8) lie in the scale array, its bias (O8) at the
  same offset in the bias array.

``params`` (int64, one row of :data:`PARAM_COUNT` per step) holds the kernel's integer arguments in the order of
``adder2d_u8_numba._INT_ARGS`` (or the pool's geometry, :data:`POOL_PARAMS`, the stem's, :data:`STEM_PARAMS`, or
the quantiser's, :data:`QUANTIZE_PARAMS`); ``fparams`` (float32, 4 per step) its float ones (a stem or quantiser:
``1 / scale``). The
adder steps run the very kernels of the ``frugalvision::adder2d_u8`` op, so a plan's results equal the op's bit for
bit.
"""

from __future__ import annotations

import os
import platform

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .adder_u8_numba import _FORWARD_CHUNKS, TILES, _unique_name

__all__ = [
    "BUFFER_ARENA",
    "BUFFER_INPUT",
    "BUFFER_OUTPUT",
    "PARAM_COUNT",
    "PATCH_PARAMS",
    "POOL_PARAMS",
    "QUANTIZE_PARAMS",
    "STEM_PARAMS",
    "STEP_ADDER",
    "STEP_CONV_STEM",
    "STEP_FIELDS",
    "STEP_MAX_POOL",
    "STEP_PATCHES",
    "STEP_QUANTIZE",
    "run_steps",
    "step_phases",
]

STEP_ADDER, STEP_MAX_POOL, STEP_PATCHES, STEP_CONV_STEM, STEP_QUANTIZE = 0, 1, 2, 3, 4
BUFFER_INPUT, BUFFER_OUTPUT, BUFFER_ARENA = 0, 1, 2
STEP_FIELDS = ("kind", "in_buffer", "in_offset", "in_bytes", "out_buffer", "out_offset", "out_bytes", "res_buffer",
               "res_offset", "res_bytes", "weight_offset", "weight_bytes", "groups", "blocks", "steps",
               "vector_offset", "vector_length")
PARAM_COUNT = 26  # the adder kernel's integer arguments (adder_u8_numba._INT_ARGS)
POOL_PARAMS = ("n", "height", "width", "channels", "h_out", "w_out", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw")
PATCH_PARAMS = (*POOL_PARAMS, "zero_point", "row_bytes")  # STEP_PATCHES: the pool's geometry, padding byte, row
STEM_PARAMS = ("n", "channels", "height", "width", "out_channels", "h_out", "w_out", "kh", "kw", "sh", "sw", "ph",
               "pw", "dh", "dw", "zero_point", "qmin", "out_padded")  # STEP_CONV_STEM
QUANTIZE_PARAMS = ("n", "channels", "height", "width", "zero_point")  # STEP_QUANTIZE
_POOL_ROWS_PER_TASK = 8
_STEM_ROWS_PER_TASK = 4
_QUANTIZE_TASK = 4096  # values per parallel task of the one-channel quantiser
_QUANTIZE_ROWS_PER_TASK = 2  # image rows per parallel task of the quantiser of several channels
_PATCH_ROWS_PER_TASK = 2


def _adder_chunk(width, x, w, out, scale, bias, res, ints, floats, chunk):
    """Task ``chunk`` of the SAD kernel of vector ``width`` (compiled code only, see the overload below)."""
    raise NotImplementedError("compiled code only")


@overload(_adder_chunk)
def _adder_chunk_overload(width, x, w, out, scale, bias, res, ints, floats, chunk):
    # the kernel is chosen by the literal width when the caller is compiled, so that the driver of one width
    # compiles (and caches) only that width's kernel; a closure over the kernel itself would not be cached by numba
    if not isinstance(width, types.IntegerLiteral):
        return None
    kernel = _FORWARD_CHUNKS[width.literal_value]

    def impl(width, x, w, out, scale, bias, res, ints, floats, chunk):  # pragma: no cover - compiled
        kernel(x, w, out, scale, bias, res, ints, floats, chunk)

    return _unique_name(impl, f"_adder_chunk_width{width.literal_value}")


@intrinsic
def _fetch_add(typingctx, counters, index):
    """``counters[index] += 1`` as one atomic read-modify-write (sequentially consistent); returns the old value."""
    sig = types.int64(types.Array(types.int64, 1, "C"), types.int64)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.atomic_rmw("add", builder.gep(data, [args[1]]), ir.Constant(ir.IntType(64), 1), "seq_cst")

    return sig, codegen


@intrinsic
def _load_acquire(typingctx, counters, index):
    """``counters[index]`` as an atomic load with acquire order (what other threads wrote before their
    :func:`_fetch_add` is visible after it)."""
    sig = types.int64(types.Array(types.int64, 1, "C"), types.int64)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.load_atomic(builder.gep(data, [args[1]]), "acquire", 8)

    return sig, codegen


_POSIX = os.name == "posix"
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
# A waiting thread spins this many times (~20-50 us) before it yields its CPU at each further check: a thread just
# woken may share the waiter's CPU until the kernel moves it (the kernel tends to wake a thread on its waker's CPU),
# and a waiter that only spins then holds the CPU that the task it waits for needs, for a whole time slice.
# Measured on ResNet-20 at batch 8 after a 20 ms pause (as between the calls of `bench quant-model`): 7.2 ms per
# segment call spinning only, against 1.7 ms without the pause.
_SPINS_BEFORE_YIELD = 1000


@intrinsic
def _yield_cpu(typingctx):
    """``sched_yield()``: lets another thread that is ready on this CPU run (``SwitchToThread`` is not used: POSIX
    only; elsewhere a plain spin)."""
    sig = types.none()

    def codegen(context, builder, signature, args):
        if _POSIX:
            fnty = ir.FunctionType(ir.IntType(32), [])
            function = cgutils.get_or_insert_function(builder.module, fnty, "sched_yield")
            builder.call(function, [])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _spin_pause(typingctx):
    """A spin-wait hint (``pause`` on x86: lets the sibling hyperthread run and saves power; nothing elsewhere)."""
    sig = types.none()

    def codegen(context, builder, signature, args):
        if _X86:
            pause = builder.module.declare_intrinsic("llvm.x86.sse2.pause", fnty=ir.FunctionType(ir.VoidType(), []))
            builder.call(pause, [])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def _max_pool_chunk(src, dst, p, task):  # pragma: no cover - compiled
    """Task ``task`` (:data:`_POOL_ROWS_PER_TASK` output rows) of the max-pool of the uint8 (N, H, W, C) map ``src``
    into (N, Ho, Wo, C) ``dst`` (both flat); ``p`` in the order of :data:`POOL_PARAMS`. Window taps in the padding
    are skipped (as ``F.max_pool2d`` pads with -inf)."""
    n, height, width, channels, h_out, w_out = p[0], p[1], p[2], p[3], p[4], p[5]
    kh, kw, sh, sw, ph, pw, dh, dw = p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13]
    src_base, dst_base = np.int64(src.ctypes.data), np.int64(dst.ctypes.data)
    vector_end = channels // 8 * 8  # channels taken 8 at a time (one 64-bit vector of bytes)
    for row in range(task * _POOL_ROWS_PER_TASK, min(n * h_out, (task + 1) * _POOL_ROWS_PER_TASK)):
        b, oh = row // h_out, row % h_out
        i_lo = max(0, (ph - oh * sh + dh - 1) // dh)  # the window's taps inside the map: i_lo <= i < i_hi
        i_hi = min(kh, (height - 1 + ph - oh * sh) // dh + 1)
        for ow in range(w_out):
            o = ((b * h_out + oh) * w_out + ow) * channels
            j_lo = max(0, (pw - ow * sw + dw - 1) // dw)
            j_hi = min(kw, (width - 1 + pw - ow * sw) // dw + 1)
            s = ((b * height + oh * sh - ph + i_lo * dh) * width + ow * sw - pw + j_lo * dw) * channels
            for c in range(0, vector_end, 8):
                _copy8(dst_base + o + c, src_base + s + c)
            for c in range(vector_end, channels):
                dst[o + c] = src[s + c]
            for i in range(i_lo, i_hi):
                for j in range(j_lo, j_hi):
                    s = ((b * height + oh * sh - ph + i * dh) * width + ow * sw - pw + j * dw) * channels
                    for c in range(0, vector_end, 8):
                        _max8(dst_base + o + c, src_base + s + c)
                    for c in range(vector_end, channels):
                        dst[o + c] = max(dst[o + c], src[s + c])


@intrinsic
def _max8(typingctx, dst, src):
    """The 8 bytes at the integer address ``dst`` become their lane-wise unsigned maximum with those at ``src``."""
    sig = types.none(types.int64, types.int64)

    def codegen(context, builder, signature, args):
        v8 = ir.VectorType(ir.IntType(8), 8)
        umax = builder.module.declare_intrinsic("llvm.umax.v8i8", fnty=ir.FunctionType(v8, [v8, v8]))
        d, s = (builder.inttoptr(a, v8.as_pointer()) for a in args)
        builder.store(builder.call(umax, [builder.load(d, align=1), builder.load(s, align=1)]), d, align=1)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _copy8(typingctx, dst, src):
    """Copies the 8 bytes at the integer address ``src`` to ``dst`` (one unaligned 64-bit load and store)."""
    sig = types.none(types.int64, types.int64)

    def codegen(context, builder, signature, args):
        i64p = ir.IntType(64).as_pointer()
        value = builder.load(builder.inttoptr(args[1], i64p), align=1)
        builder.store(value, builder.inttoptr(args[0], i64p), align=1)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _keep_low_bytes(typingctx, address, keep):
    """Zeroes the 8 bytes at the integer ``address`` but the first ``keep`` (0 < keep < 8; one unaligned 64-bit
    load, mask and store)."""
    sig = types.none(types.int64, types.int64)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        pointer = builder.inttoptr(args[0], i64.as_pointer())
        mask = builder.sub(builder.shl(ir.Constant(i64, 1), builder.mul(args[1], ir.Constant(i64, 8))),
                           ir.Constant(i64, 1))  # little-endian: the first bytes are the low ones
        builder.store(builder.and_(builder.load(pointer, align=1), mask), pointer, align=1)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def _patches_chunk(src, dst, p, task):  # pragma: no cover - compiled
    """Task ``task`` (:data:`_PATCH_ROWS_PER_TASK` output rows) of the patch rows of a one-channel uint8 (N, H, W, 1)
    map: ``dst`` (N, Ho, Wo, row_bytes) holds at position (n, oh, ow) the ``kh * kw`` taps in (i, j) order
    (``zero_point`` in the padding), then zeros up to ``row_bytes``; ``p`` in the order of :data:`PATCH_PARAMS`.

    A 1x1 adder layer on these rows, with the weights laid out the same way (zeros after the taps, so that the
    padding adds ``|0 - 0| = 0``), computes the same sums as the ``kh x kw`` layer on the map; its patch rows are
    read in place in full 8-byte steps instead of being gathered a few bytes at a time (LeNet-5's first layer: 25
    taps, 32 bytes). For each output row and kernel row, the image row is copied once into a padded line (the
    ``zero_point`` around it); a kernel row of at most 8 taps is then one 8-byte move per position (kernel rows
    written in order, so the bytes past one are rewritten by the next, and the tail is cleared last; never past the
    position's own ``row_bytes``, which another task may be writing)."""
    n, height, width, h_out, w_out = p[0], p[1], p[2], p[4], p[5]
    kh, kw, sh, sw, ph, pw, dh, dw = p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13]
    zero_point, row_bytes = np.uint8(p[14]), p[15]
    taps = kh * kw
    span = (w_out - 1) * sw + (kw - 1) * dw + 1  # bytes of a padded image row that a row of positions reads
    line = np.full(max(span, 0) + 8, zero_point, dtype=np.uint8)  # one padded image row (+ 8: the last 8-byte move)
    line_base, dst_base = np.int64(line.ctypes.data), np.int64(dst.ctypes.data)
    moves = kw <= 8 and dw == 1
    for row in range(task * _PATCH_ROWS_PER_TASK, min(n * h_out, (task + 1) * _PATCH_ROWS_PER_TASK)):
        b, oh = row // h_out, row % h_out
        first = (b * h_out + oh) * w_out * row_bytes  # the row's first position
        for i in range(kh):  # kernel row i of every position of the row, from one padded image row
            ih = oh * sh - ph + i * dh
            inside = 0 <= ih < height
            for col in range(span):
                iw = col - pw
                line[col] = src[(b * height + ih) * width + iw] if inside and 0 <= iw < width else zero_point
            if moves and i * kw + 8 <= row_bytes:  # 8-byte moves; the bytes past the kernel row are rewritten
                for ow in range(w_out):  # by row i + 1 or cleared below
                    _copy8(dst_base + first + ow * row_bytes + i * kw, line_base + ow * sw)
                continue
            for ow in range(w_out):
                for j in range(kw):
                    dst[first + ow * row_bytes + i * kw + j] = line[ow * sw + j * dw]
        keep = taps - (row_bytes - 8)  # bytes of the taps in a position's last 8 bytes
        for ow in range(w_out):
            if 0 < keep < 8:
                _keep_low_bytes(dst_base + first + ow * row_bytes + row_bytes - 8, keep)
                continue
            for e in range(taps, row_bytes):
                dst[first + ow * row_bytes + e] = 0


@njit(cache=True, nogil=True, parallel=True)
def _patches_u8(src, dst, p):  # pragma: no cover - compiled
    """All the patch rows of :func:`_patches_chunk` (one step on its own, outside a plan)."""
    for task in prange(_tasks(STEP_PATCHES, 0, p)):
        _patches_chunk(src, dst, p, task)


STEM_TILE = 8  # output positions per register tile of the stem (x 8 or 16 float64 channels)
_F64 = ir.DoubleType()


def _make_stem_tile(rows: int):
    """The stem's register tile for ``rows`` rows of 8 output channels (1 or 2: 8 or 16 accumulators)."""

    def _stem_tile(typingctx, padded, origins, offsets, w, w_off, w_stride, bias, inverse_scale, zero_point, qmin,
                   dst, d_off, d_stride):
        """One tile of :data:`STEM_TILE` positions x ``8 * rows`` output channels of the stem: ``acc[m, c] =
        float64(bias[w_off + c]) + sum_k padded[origins[m] + offsets[k]] * float64(w[w_off + k * w_stride + c])``
        (``padded`` float64; fused multiply-adds: the products are exact in float64, so each step rounds once,
        like a multiply then an add; the image value is one broadcast load shared by the rows), then
        ``clamp(rint(float32(acc) * inverse_scale) + zero_point, qmin, 255)`` as bytes at ``dst[d_off + m *
        d_stride + c]``."""
        f32_1d, i64_1d, f32 = types.Array(types.float32, 1, "C"), types.Array(types.int64, 1, "C"), types.float32
        sig = types.none(types.Array(types.float64, 1, "C"), i64_1d, i64_1d, f32_1d, types.int64, types.int64,
                         f32_1d, f32, f32, f32, types.Array(types.uint8, 1, "C"), types.int64, types.int64)

        def codegen(context, builder, signature, args):
            b = builder
            w_off, w_stride, inverse_scale, zero_point, qmin, d_off, d_stride = (args[i] for i in
                                                                                 (4, 5, 7, 8, 9, 11, 12))
            sa = signature.args
            data = [context.make_array(sa[i])(context, b, args[i]).data for i in (0, 1, 2, 3, 6, 10)]
            x_d, org_d, off_d, w_d, bias_d, dst_d = data
            i64, v8f, v8d = ir.IntType(64), ir.VectorType(ir.FloatType(), 8), ir.VectorType(_F64, 8)
            fma = b.module.declare_intrinsic("llvm.fma.v8f64", fnty=ir.FunctionType(v8d, [v8d, v8d, v8d]))

            def load_vec(ptr, index, ty):
                return b.load(b.bitcast(b.gep(ptr, [index]), ty.as_pointer()), align=1)

            def splat(value, ty):
                v = b.insert_element(ir.Constant(ty, None), value, ir.Constant(ir.IntType(32), 0))
                return b.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8))

            row_offsets = [b.add(w_off, ir.Constant(i64, 8 * n)) for n in range(rows)]
            starts = [b.fpext(load_vec(bias_d, r, v8f), v8d) for r in row_offsets]
            accs = [[cgutils.alloca_once_value(b, starts[n]) for n in range(rows)] for _ in range(STEM_TILE)]
            bases = [b.gep(x_d, [b.load(b.gep(org_d, [ir.Constant(i64, m)]))]) for m in range(STEM_TILE)]
            taps = b.extract_value(context.make_array(sa[2])(context, b, args[2]).shape, 0)
            with cgutils.for_range(b, taps) as loop:
                k = loop.index
                w_k = b.mul(k, w_stride)
                wvs = [b.fpext(load_vec(w_d, b.add(r, w_k), v8f), v8d) for r in row_offsets]
                off = b.load(b.gep(off_d, [k]))
                for m in range(STEM_TILE):
                    xv = splat(b.load(b.gep(bases[m], [off])), v8d)  # a broadcast load
                    for n in range(rows):
                        b.store(b.call(fma, [xv, wvs[n], b.load(accs[m][n])]), accs[m][n])
            rint = b.module.declare_intrinsic("llvm.rint.v8f32", fnty=ir.FunctionType(v8f, [v8f]))
            inv, zp, lo = splat(inverse_scale, v8f), splat(zero_point, v8f), splat(qmin, v8f)
            hi = ir.Constant(v8f, [255.0] * 8)
            for m in range(STEM_TILE):
                for n in range(rows):
                    q = b.fadd(b.call(rint, [b.fmul(b.fptrunc(b.load(accs[m][n]), v8f), inv)]), zp)
                    q = b.select(b.fcmp_ordered("<", q, lo), lo, q)
                    q = b.select(b.fcmp_ordered(">", q, hi), hi, q)
                    out = b.trunc(b.fptosi(q, ir.VectorType(ir.IntType(32), 8)), ir.VectorType(ir.IntType(8), 8))
                    at = b.add(b.add(d_off, b.mul(ir.Constant(i64, m), d_stride)), ir.Constant(i64, 8 * n))
                    b.store(out, b.bitcast(b.gep(dst_d, [at]), out.type.as_pointer()), align=1)
            return context.get_dummy_value()

        return sig, codegen

    _stem_tile.__name__ = _stem_tile.__qualname__ = f"_stem_tile{8 * rows}"  # one name per intrinsic
    return intrinsic(_stem_tile)


_stem_tile8, _stem_tile16 = _make_stem_tile(1), _make_stem_tile(2)


@njit(cache=True, nogil=True, parallel=True)
def _conv_stem_u8(src, dst, padded, weights, bias, p, inverse_scale):  # pragma: no cover - compiled
    """The float stem and the input quantiser in one pass: float32 (N, C, H, W) image ``src`` (flat) -> uint8
    (N, Ho, Wo, O) ``dst`` (flat); ``padded``: scratch for the zero-padded image in float64 (N, C, H + 2ph, W + 2pw)
    (broadcast loads of float64 need no conversion); ``weights`` float32 (C, kh, kw, O8) flat and ``bias`` float32
    (O8,), O8 the output channels padded to a multiple of 8 with zeros; ``p`` in the order of :data:`STEM_PARAMS`.

    ``y = float32(bias + sum_k x_k w_k)`` with the products (exact: float32 x float32 fits float64) summed in float64
    and rounded once to float32, as ``FloatConvStem.float_output`` computes it with ``F.conv2d`` in float64 (the
    summation orders differ; they round to different float32 values only where the float64 sum lies within a few
    units of 2**-53 of a float32 rounding midpoint). Then ``torch.quantize_per_tensor``'s quantiser:
    ``clamp(round_half_even(y * inverse_scale) + zero_point, qmin, 255)``, ``inverse_scale = float32(1) /
    float32(scale)``, the product in float32. ``qmin`` is the zero point after a ReLU (``q(relu(y)) = max(q(y),
    zero_point)``), else 0; a max-pool after the ReLU is a uint8 max-pool step (max commutes with the monotone
    quantiser; values beyond ``|y / scale| ~ 2**31`` clamp, see :func:`_quantize_u8`). Padding taps read zeros
    (adding 0 changes no sum). Tiles of :data:`STEM_TILE` positions x 16 or 8 channels (:func:`_make_stem_tile`),
    in parallel: first the padded image (:func:`_pad_chunk`), then the output rows (:func:`_stem_chunk`)."""
    for task in prange(_tasks(STEP_CONV_STEM, 0, p)):
        _pad_chunk(src, padded, p, task)
    for task in prange(_tasks(STEP_CONV_STEM, 1, p)):
        _stem_chunk(padded, dst, weights, bias, p, inverse_scale, task)


@njit(cache=True, nogil=True)
def _pad_chunk(src, padded, p, task):  # pragma: no cover - compiled
    """Task ``task`` (:data:`_STEM_ROWS_PER_TASK` rows of (N, C, H + 2ph)) of the stem's float64 zero-padded image:
    the float32 (N, C, H, W) ``src`` into ``padded`` (N, C, H + 2ph, W + 2pw), zeros around; ``p`` in the order of
    :data:`STEM_PARAMS`."""
    n, channels, height, width, ph, pw = p[0], p[1], p[2], p[3], p[11], p[12]
    hp, wp = height + 2 * ph, width + 2 * pw
    for row in range(task * _STEM_ROWS_PER_TASK, min(n * channels * hp, (task + 1) * _STEM_ROWS_PER_TASK)):
        r = row % hp
        o = row * wp
        if r < ph or r >= ph + height:
            padded[o : o + wp] = 0.0
            continue
        s = (row // hp * height + r - ph) * width
        padded[o : o + pw] = 0.0
        for col in range(width):
            padded[o + pw + col] = np.float64(src[s + col])
        padded[o + pw + width : o + wp] = 0.0


@njit(cache=True, nogil=True)
def _stem_chunk(padded, dst, weights, bias, p, inverse_scale, task):  # pragma: no cover - compiled
    """Task ``task`` (:data:`_STEM_ROWS_PER_TASK` output rows of (N * Ho)) of :func:`_conv_stem_u8`, from the padded
    image of :func:`_pad_chunk`."""
    n, channels, height, width, out_channels, h_out, w_out = p[0], p[1], p[2], p[3], p[4], p[5], p[6]
    kh, kw, sh, sw, ph, pw, dh, dw = p[7], p[8], p[9], p[10], p[11], p[12], p[13], p[14]
    zero_point, qmin, out_padded = np.float32(p[15]), np.float32(p[16]), p[17]
    hp, wp = height + 2 * ph, width + 2 * pw
    offsets = np.empty(channels * kh * kw, dtype=np.int64)  # tap (c, i, j) relative to a position's origin
    for c in range(channels):
        for i in range(kh):
            for j in range(kw):
                offsets[(c * kh + i) * kw + j] = (c * hp + i * dh) * wp + j * dw
    origins = np.empty(STEM_TILE, dtype=np.int64)
    stage = np.empty(STEM_TILE * 8, dtype=np.uint8)
    for row in range(task * _STEM_ROWS_PER_TASK, min(n * h_out, (task + 1) * _STEM_ROWS_PER_TASK)):
        _stem_row(padded, dst, origins, stage, offsets, weights, bias, row, channels, hp, wp, h_out, w_out, sh, sw,
                  out_channels, out_padded, inverse_scale, zero_point, qmin)


@njit(cache=True, inline="always")
def _stem_row(padded, dst, origins, stage, offsets, weights, bias, row, channels, hp, wp, h_out, w_out, sh, sw,
              out_channels, out_padded, inverse_scale, zero_point, qmin):  # pragma: no cover - compiled
    """Output row ``row`` of (N * Ho) of :func:`_conv_stem_u8`."""
    b, oh = row // h_out, row % h_out
    for ow0 in range(0, w_out, STEM_TILE):
        count = min(STEM_TILE, w_out - ow0)
        for m in range(STEM_TILE):  # past the row's end: the last position again (its bytes are dropped)
            origins[m] = (b * channels * hp + oh * sh) * wp + (ow0 + min(m, count - 1)) * sw
        d = ((b * h_out + oh) * w_out + ow0) * out_channels
        wide = out_channels // 16 * 16 if count == STEM_TILE else 0  # 16 channels per tile, straight into dst
        for c0 in range(0, wide, 16):
            _stem_tile16(padded, origins, offsets, weights, c0, out_padded, bias, inverse_scale, zero_point,
                         qmin, dst, d + c0, out_channels)
        for c0 in range(wide, out_padded, 8):
            lanes = min(8, out_channels - c0)
            if count == STEM_TILE and lanes == 8:
                _stem_tile8(padded, origins, offsets, weights, c0, out_padded, bias, inverse_scale, zero_point,
                            qmin, dst, d + c0, out_channels)
                continue
            _stem_tile8(padded, origins, offsets, weights, c0, out_padded, bias, inverse_scale, zero_point, qmin,
                        stage, 0, 8)
            for m in range(count):
                for lane in range(lanes):
                    dst[d + m * out_channels + c0 + lane] = stage[m * 8 + lane]


def _quantize_ir(b: ir.IRBuilder, value: ir.Value, inverse_scale: ir.Value, zero_point: ir.Value) -> ir.Value:
    """``clamp(round_half_even(value * inverse_scale) + zero_point, 0, 255)`` in float32 then as bytes, on a float
    or a vector of floats (``llvm.rint``: one instruction, where ``np.rint`` may call the C library)."""
    ty = value.type
    lanes = ty.count if isinstance(ty, ir.VectorType) else 0
    name = f"llvm.rint.v{lanes}f32" if lanes else "llvm.rint.f32"
    rint = b.module.declare_intrinsic(name, fnty=ir.FunctionType(ty, [ty]))
    if lanes:
        inverse_scale, zero_point = (b.shuffle_vector(
            b.insert_element(ir.Constant(ty, None), v, ir.Constant(ir.IntType(32), 0)), ir.Constant(ty, None),
            ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)) for v in (inverse_scale, zero_point))
    q = b.fadd(b.call(rint, [b.fmul(value, inverse_scale)]), zero_point)
    lo, hi = ir.Constant(ty, 0.0 if not lanes else [0.0] * lanes), ir.Constant(ty, 255.0 if not lanes else
                                                                               [255.0] * lanes)
    q = b.select(b.fcmp_ordered("<", q, lo), lo, q)
    q = b.select(b.fcmp_ordered(">", q, hi), hi, q)
    i32, i8 = (ir.VectorType(t, lanes) if lanes else t for t in (ir.IntType(32), ir.IntType(8)))
    return b.trunc(b.fptosi(q, i32), i8)


@intrinsic
def _quantize_one(typingctx, value, inverse_scale, zero_point):
    """One float32 value through the quantiser (:func:`_quantize_ir`), as uint8."""
    sig = types.uint8(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        return _quantize_ir(builder, *args)

    return sig, codegen


@intrinsic
def _quantize_16(typingctx, src, s_off, dst, d_off, inverse_scale, zero_point):
    """``src[s_off : s_off + 16]`` (float32) through the quantiser into ``dst[d_off : d_off + 16]`` (uint8)."""
    sig = types.none(types.Array(types.float32, 1, "C"), types.int64, types.Array(types.uint8, 1, "C"),
                     types.int64, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        b = builder
        sa = signature.args
        src_d = context.make_array(sa[0])(context, b, args[0]).data
        dst_d = context.make_array(sa[2])(context, b, args[2]).data
        vf = ir.VectorType(ir.FloatType(), 16)
        value = b.load(b.bitcast(b.gep(src_d, [args[1]]), vf.as_pointer()), align=1)
        q = _quantize_ir(b, value, args[4], args[5])
        b.store(q, b.bitcast(b.gep(dst_d, [args[3]]), q.type.as_pointer()), align=1)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def _quantize_chunk(src, dst, p, inverse_scale, task):  # pragma: no cover - compiled
    """Task ``task`` of ``torch.quantize_per_tensor``'s quantiser (as in :func:`_conv_stem_u8`, without the
    convolution) from the float32 (N, C, H, W) ``src`` into the uint8 (N, H, W, C) ``dst`` (both flat); ``p`` in the
    order of :data:`QUANTIZE_PARAMS`. A task: :data:`_QUANTIZE_TASK` values of a one-channel image ((N, 1, H, W) is
    (N, H, W, 1): 16 values at a time), else :data:`_QUANTIZE_ROWS_PER_TASK` rows of (N * H). Equal to torch's bytes
    for finite values with ``|x / scale| < 2**31``: beyond, torch's int32 conversion overflows (e.g. +inf can give
    byte 0), here they clamp."""
    n, channels, height, width, zero_point = p[0], p[1], p[2], p[3], np.float32(p[4])
    if channels == 1:
        start, end = task * _QUANTIZE_TASK, min(n * height * width, (task + 1) * _QUANTIZE_TASK)
        vector_end = start + (end - start) // 16 * 16
        for i in range(start, vector_end, 16):
            _quantize_16(src, i, dst, i, inverse_scale, zero_point)
        for i in range(vector_end, end):
            dst[i] = _quantize_one(src[i], inverse_scale, zero_point)
        return
    for row in range(task * _QUANTIZE_ROWS_PER_TASK, min(n * height, (task + 1) * _QUANTIZE_ROWS_PER_TASK)):
        b, h = row // height, row % height
        for c in range(channels):
            s = ((b * channels + c) * height + h) * width
            d = row * width * channels + c
            for col in range(width):
                dst[d + col * channels] = _quantize_one(src[s + col], inverse_scale, zero_point)


@njit(cache=True, nogil=True, parallel=True)
def _quantize_u8(src, dst, p, inverse_scale):  # pragma: no cover - compiled
    """All the tasks of :func:`_quantize_chunk` (one step on its own, outside a plan)."""
    for task in prange(_tasks(STEP_QUANTIZE, 0, p)):
        _quantize_chunk(src, dst, p, inverse_scale, task)


@njit(cache=True)
def _tasks(kind, phase, p):  # pragma: no cover - compiled
    """The task count of phase ``phase`` of a step of ``kind`` with the parameters ``p`` (its ``params`` row): the
    one definition the chunk functions' task ranges follow."""
    if kind == STEP_ADDER:
        return p[24]  # num_chunks (adder_u8_numba._INT_ARGS)
    if kind == STEP_MAX_POOL:
        return -(-p[0] * p[4] // _POOL_ROWS_PER_TASK)
    if kind == STEP_PATCHES:
        return -(-p[0] * p[4] // _PATCH_ROWS_PER_TASK)
    if kind == STEP_QUANTIZE:  # one channel: values; else rows
        if p[1] == 1:
            return -(-p[0] * p[2] * p[3] // _QUANTIZE_TASK)
        return -(-p[0] * p[2] // _QUANTIZE_ROWS_PER_TASK)
    if phase == 0:  # STEP_CONV_STEM: rows of the padded image (N, C, H + 2ph), then output rows (N * Ho)
        return -(-p[0] * p[1] * (p[2] + 2 * p[11]) // _STEM_ROWS_PER_TASK)
    return -(-p[0] * p[5] // _STEM_ROWS_PER_TASK)


@njit(cache=True, inline="always")
def _view(buffer, offset, length, x, out, arena):  # pragma: no cover - compiled
    if buffer == BUFFER_INPUT:
        return x[offset : offset + length]
    if buffer == BUFFER_OUTPUT:
        return out[offset : offset + length]
    return arena[offset : offset + length]


def _make_driver(width: int):
    """The drivers of vector ``width``: ``(serial, parallel)``, see :func:`run_steps`."""

    def _work(x, out, arena, weights, scales, biases, table, params, fparams, phases, counters):  # pragma: no cover
        """One thread's share of all the phases: claims the next task of the current phase until none is left,
        then waits until every task of the phase is done (the next phase reads what this one wrote). A thread that
        runs alone, or starts late, finds the tasks left unclaimed: no task waits for a given thread."""
        for ph in range(phases.shape[0]):
            s, phase, tasks = phases[ph, 0], phases[ph, 1], phases[ph, 2]
            t = table[s]
            kind = t[0]
            src = _view(t[1], t[2], t[3], x, out, arena)
            dst = _view(t[4], t[5], t[6], x, out, arena)
            res = _view(t[7], t[8], t[9], x, out, arena)  # a stem: its float64 scratch
            while True:
                task = _fetch_add(counters, 2 * ph)
                if task >= tasks:
                    break
                if kind == STEP_ADDER:
                    w = weights[t[10] : t[10] + t[11]].reshape((t[12], t[13], t[14], 8, 8))  # (G, B, S, 8, 8)
                    _adder_chunk(width, src, w, dst, scales[t[15] : t[15] + t[16]], biases[t[15] : t[15] + t[16]],
                                 res, params[s], fparams[s], task)
                elif kind == STEP_MAX_POOL:
                    _max_pool_chunk(src, dst, params[s], task)
                elif kind == STEP_PATCHES:
                    _patches_chunk(src, dst, params[s], task)
                elif kind == STEP_QUANTIZE:
                    _quantize_chunk(src.view(np.float32), dst, params[s], fparams[s][0], task)
                elif phase == 0:  # STEP_CONV_STEM: the padded image
                    _pad_chunk(src.view(np.float32), res.view(np.float64), params[s], task)
                else:  # weights (C, kh, kw, O8) in scales, bias (O8,) in biases
                    _stem_chunk(res.view(np.float64), dst, scales[t[15] : t[15] + t[16]],
                                biases[t[15] : t[15] + params[s][17]], params[s], fparams[s][0], task)
                _fetch_add(counters, 2 * ph + 1)
            spins = 0
            while _load_acquire(counters, 2 * ph + 1) < tasks:
                spins += 1
                if spins < _SPINS_BEFORE_YIELD:
                    _spin_pause()
                else:
                    _yield_cpu()

    # cached like its kernels: every per-width closure it calls has a name of its own (see _unique_name), else a
    # width's driver loaded from the cache could call another width's kernel
    work = njit(cache=True, nogil=True)(_unique_name(_work, f"work_width{width}"))

    def _serial(x, out, arena, weights, scales, biases, table, params, fparams, phases, counters):  # pragma: no cover
        work(x, out, arena, weights, scales, biases, table, params, fparams, phases, counters)

    def _parallel(x, out, arena, weights, scales, biases, table, params, fparams, phases, counters,
                  workers):  # pragma: no cover - compiled
        for _ in prange(workers):  # one parallel region for the whole forward
            work(x, out, arena, weights, scales, biases, table, params, fparams, phases, counters)

    return (njit(cache=True, nogil=True)(_unique_name(_serial, f"run_steps_serial_width{width}")),
            njit(cache=True, nogil=True, parallel=True)(_unique_name(_parallel, f"run_steps_parallel_width{width}")))


_DRIVERS = {vec: _make_driver(vec) for vec in TILES}


def step_phases(table: np.ndarray, params: np.ndarray) -> np.ndarray:
    """The phases of a step table, int64 (P, 3): (step, phase of the step, tasks). A phase's tasks run in any
    order on any thread; a phase starts when the one before it is done. A stem step has two phases (the padded
    image, then the output rows), the others one."""
    rows = []
    for s, (t, p) in enumerate(zip(table, params)):
        kind = int(t[0])
        for phase in range(2 if kind == STEP_CONV_STEM else 1):
            rows.append((s, phase, int(_tasks(kind, phase, p))))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def run_steps(width: int, x: np.ndarray, out: np.ndarray, arena: np.ndarray, weights: np.ndarray,
              scales: np.ndarray, biases: np.ndarray, table: np.ndarray, params: np.ndarray, fparams: np.ndarray,
              phases: np.ndarray | None = None, workers: int = 1) -> None:
    """Runs the steps of ``table`` (see the module docstring) with the kernels of vector ``width``: ``x``, ``out``,
    ``arena`` and ``weights`` flat uint8 arrays, ``scales`` and ``biases`` flat float32 arrays, ``table`` int64
    (steps, len(STEP_FIELDS)), ``params`` int64 (steps, PARAM_COUNT), ``fparams`` float32 (steps, 4); ``phases``:
    :func:`step_phases` of the table (computed when ``None``).

    ``workers`` threads share the tasks of each phase; with more than one, the whole table runs in one parallel
    region (one wake-up of numba's thread pool per call, where a parallel loop per step wakes the sleeping pool
    once per step: ~50 us each on a 2-core machine with ``OMP_WAIT_POLICY=PASSIVE``); the threads wait for each
    other between phases by spinning, only within the call."""
    if phases is None:
        phases = step_phases(table, params)
    counters = np.zeros(2 * len(phases), dtype=np.int64)  # per phase: tasks claimed, tasks done
    serial, parallel = _DRIVERS[width]
    if workers <= 1:
        serial(x, out, arena, weights, scales, biases, table, params, fparams, phases, counters)
    else:
        parallel(x, out, arena, weights, scales, biases, table, params, fparams, phases, counters, workers)
