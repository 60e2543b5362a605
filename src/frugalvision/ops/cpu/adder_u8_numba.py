"""Integer AdderNet kernels for the CPU: sums of absolute differences of unsigned bytes, compiled with numba.

AdderNet: H. Chen et al., CVPR 2020, arXiv 1912.13200, Eq. 2 in integers (see :mod:`frugalvision.ops.adder2d_u8`):
``S[p, o] = sum_k |Xcol[p, k] - W[o, k]|`` over the reduction axis ``k = (i, j, c)`` of one group.

Design:

* **Channels in vector lanes, no horizontal sums.** x86 ``vpsadbw`` sums the absolute differences of 8 byte pairs
  into each 64-bit lane. The packed weights (:class:`frugalvision.ops.adder2d_u8.PackedAdderWeight`) interleave 8
  output channels per 64-byte row: ``Wp[g, b, t, l, e] = W[g*Og + 8b + l, 8t + e]``. One step ``t`` broadcasts the
  8 input bytes ``Xcol[p, 8t:8t+8]`` to every lane and runs one ``vpsadbw`` against that row, so lane ``l``
  accumulates output channel ``8b + l`` directly: after the last step the accumulator *is* 8 outputs, already in the
  channels-last order of the result. The reduction axis only needs padding to a multiple of 8 (none for the
  ResNet-20 layers) and there is no per-output horizontal reduction. The 256-bit form (AVX2) covers 4 channels per
  instruction, two per row.
* **Register tile.** A tile of ``MR`` positions x ``NR`` rows of 8 channels keeps ``MR * NR`` accumulators in
  registers: per step ``MR`` broadcast loads, ``NR`` weight loads, ``MR * NR`` SADs and adds (:data:`TILES`).
  The tile is emitted as LLVM IR by a numba ``@intrinsic`` (``_sad_tile``), which calls
  ``llvm.x86.avx512.psad.bw.512`` / ``llvm.x86.avx2.psad.bw``; the ``portable`` variant emits plain LLVM vector
  operations (unsigned max - min, widen, add) that every LLVM target lowers. A variant is compiled only when its
  backend is used, and the x86 ones refuse to compile on a CPU without the instruction (:func:`cpu_features`).
* **Patch rows read in place.** A parallel task is a block of :data:`POS_BLOCK` consecutive positions of the
  flattened ``(n, oh, ow)`` index. A position's patch row ``Xcol[p, :]`` (``(i, j, c)`` order) is a few *runs* of
  contiguous input bytes (:func:`run_layout`): one per kernel row when groups is 1 and the kernel is not dilated
  along the width, one per tap when ``C/G`` is a multiple of 8. The task writes each run's start address into a
  small table and the tile reads the input where it lies: runs in the padding point at a buffer of zero-point bytes,
  and only kernel rows cut by the left or right border are copied (once per output-row segment, with their padding
  columns). Other layers (``C/G`` and ``kw * C`` not multiples of 8) copy whole patch rows, zero-padded to 8 bytes.
  Then, per tile of channels, the task sweeps its position tiles, so that the weight rows of the tile stay in L1.
* **Fused epilogue**, vectorised over the 8 channels of an accumulator and written straight into the channels-last
  output: int32 sums; or ``y = float32(S) * scale + bias (+ (float32(r) - zr) * sr)`` in float32, one rounding per
  operation and no fused multiply-add (the instructions carry no fast-math flags), as the plain-PyTorch reference
  computes it; or ``clamp(round_half_even(y), qmin, qmax)`` as uint8. Layers whose channels per group are not a
  multiple of 8 leave their sums in a small int32 buffer and finish in scalar numba code (:func:`_store_scalar`).

Thread count: :func:`frugalvision.ops.cpu.adder_numba.sync_threads` (``torch.get_num_threads()``).
"""

from __future__ import annotations

import functools

import llvmlite.binding as llvm_binding
import numba
import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic
from torch import Tensor

from ..utils import conv_output_size
from .adder_numba import _next_position, sync_threads

__all__ = [
    "LANES",
    "OUTPUT_MODES",
    "PEAK_ROW_STRIDE",
    "PEAK_TILE",
    "POS_BLOCK",
    "STEP",
    "TILES",
    "WIDTHS",
    "WIDTHS_BYTES",
    "adder2d_u8_forward",
    "cpu_features",
    "kernel_arguments",
    "per_group_padded",
    "run_layout",
    "sad_peak_loop",
    "width_rejects",
]

STEP = 8  # bytes of the reduction axis per SAD step (one 64-bit lane)
LANES = 8  # output channels per packed weight row (one 512-bit vector = 8 lanes x 8 bytes)
ROW_BYTES = STEP * LANES
POS_BLOCK = 64  # positions per parallel task
WIDTHS = {"sad512": 64, "sad256": 32, "portable": 0}  # backend -> vector width in bytes (0: generic LLVM IR)
WIDTHS_BYTES = {64: 64, 32: 32, 0: 64}  # width -> bytes per SAD vector
TILES = {64: (8, 2), 32: (4, 1), 0: (2, 1)}  # width -> (MR positions, NR rows of 8 channels)
OUTPUT_MODES = {"int32": 0, "float32": 1, "uint8": 2}
_REQUIRED_FEATURES = {64: ("avx512bw",), 32: ("avx2",)}
_TASKS_PER_THREAD = 8
LAYOUT_ROWS, LAYOUT_TAPS, LAYOUT_DENSE = 0, 1, 2  # how the patch row of a position is read (see run_layout)
_SLACK = 2 * ROW_BYTES  # bytes after the last patch row (64-byte copies write past a row's end)


# --------------------------------------------------------------------------------------------------------------
# CPU features


@functools.lru_cache(maxsize=1)
def cpu_features() -> frozenset[str]:
    """Features numba compiles for: ``NUMBA_CPU_FEATURES`` when set, else LLVM's view of the host CPU (which also
    checks that the OS saves the vector registers)."""
    spec = numba.config.CPU_FEATURES or llvm_binding.get_host_cpu_features().flatten()
    return frozenset(f[1:] for f in spec.split(",") if f.startswith("+"))


def width_rejects(width: int) -> str | None:
    """Why the SAD kernels of this vector width cannot run on this CPU, or ``None``."""
    missing = [f for f in _REQUIRED_FEATURES.get(width, ()) if f not in cpu_features()]
    if missing:
        return f"this CPU (as numba targets it) lacks {', '.join(missing)}"
    return None


# --------------------------------------------------------------------------------------------------------------
# LLVM IR helpers

_I8, _I32, _I64, _F32 = ir.IntType(8), ir.IntType(32), ir.IntType(64), ir.FloatType()
_PSAD = {64: ("llvm.x86.avx512.psad.bw.512", 8), 32: ("llvm.x86.avx2.psad.bw", 4)}


def _const(value: int) -> ir.Constant:
    return ir.Constant(_I64, value)


def _byte_ptr(builder: ir.IRBuilder, data, offset) -> ir.Value:
    return builder.gep(builder.bitcast(data, _I8.as_pointer()), [offset])


def _load(builder: ir.IRBuilder, data, byte_offset, ty: ir.Type) -> ir.Value:
    return builder.load(builder.bitcast(_byte_ptr(builder, data, byte_offset), ty.as_pointer()), align=1)


def _store(builder: ir.IRBuilder, value: ir.Value, data, byte_offset) -> None:
    builder.store(value, builder.bitcast(_byte_ptr(builder, data, byte_offset), value.type.as_pointer()), align=1)


def _splat(builder: ir.IRBuilder, scalar: ir.Value, count: int) -> ir.Value:
    vec_ty = ir.VectorType(scalar.type, count)
    v = builder.insert_element(ir.Constant(vec_ty, None), scalar, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, count), [0] * count))


def _shuffle(builder: ir.IRBuilder, a: ir.Value, b: ir.Value, indices: list[int]) -> ir.Value:
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(_I32, len(indices)), indices))


def _array_data(context, builder, ty, value) -> ir.Value:
    return context.make_array(ty)(context, builder, value).data


class _SadUnit:
    """Emits one accumulation step ``acc += SAD(x_broadcast, w_row)`` for one vector width.

    Accumulators hold 8 channels: for width 64 one ``<8 x i64>``; for width 32 two ``<4 x i64>`` (channels 0-3 and
    4-7); for the generic form one ``<64 x i32>`` of per-byte differences, summed by groups of 8 at the end.
    """

    def __init__(self, builder: ir.IRBuilder, width: int) -> None:
        self.builder = builder
        self.width = width
        if width in _PSAD:
            name, lanes = _PSAD[width]
            self.vin = ir.VectorType(_I8, width)
            self.vout = ir.VectorType(_I64, lanes)
            self.fn = builder.module.declare_intrinsic(name, fnty=ir.FunctionType(self.vout, [self.vin, self.vin]))
            self.parts = ROW_BYTES // width
            self.acc_ty = self.vout
        else:
            self.vin = ir.VectorType(_I8, ROW_BYTES)
            self.parts = 1
            self.acc_ty = ir.VectorType(_I32, ROW_BYTES)

    def broadcast(self, address: ir.Value) -> ir.Value:
        """The 8 bytes at the integer ``address`` repeated across one input vector."""
        b = self.builder
        q = b.load(b.inttoptr(address, _I64.as_pointer()), align=1)
        return b.bitcast(_splat(b, q, self.vin.count // STEP), self.vin)

    def accumulate(self, acc: ir.Value, x: ir.Value, w: ir.Value) -> ir.Value:
        b = self.builder
        if self.width in _PSAD:
            return b.add(acc, b.call(self.fn, [x, w]))
        diff = b.sub(b.select(b.icmp_unsigned(">", x, w), x, w), b.select(b.icmp_unsigned(">", x, w), w, x))
        return b.add(acc, b.zext(diff, self.acc_ty))

    def finish(self, accs: list[ir.Value]) -> ir.Value:
        """The accumulators of one 8-channel row as ``<8 x i32>`` sums."""
        b = self.builder
        if self.width in _PSAD:
            full = accs[0] if self.parts == 1 else _shuffle(b, accs[0], accs[1], list(range(8)))
            return b.trunc(full, ir.VectorType(_I32, LANES))
        acc = accs[0]
        total = None
        for e in range(STEP):  # lane l sums bytes 8l .. 8l+7
            part = _shuffle(b, acc, acc, [STEP * lane + e for lane in range(LANES)])
            total = part if total is None else b.add(total, part)
        return total


def _store_outputs(builder, sums, m, n, args, kind: str, residual: bool) -> None:
    """Stores the ``<L x i32>`` sums (L = 8 or 16: one or two channel rows) of position ``m``, channel rows from
    ``n`` on (both i64 IR values), of the tile (see :func:`_sad_tile`), for one output ``kind`` (``stage``,
    ``int32``, ``float32``, ``uint8``) known when the code is generated."""
    b = builder
    out, out_off, out_pos_stride, stage, scale, bias, ch0, res, res_zp, res_scale, qmin, qmax, nr = args
    lanes = sums.type.count
    if kind == "stage":
        _store(b, sums, stage, b.mul(b.add(b.mul(m, _const(nr)), n), _const(LANES * 4)))
        return
    elem = b.add(b.add(out_off, b.mul(m, out_pos_stride)), b.mul(n, _const(LANES)))
    if kind == "int32":
        _store(b, sums, out, b.mul(elem, _const(4)))
        return
    # float32(S) * scale + bias (+ (float32(r) - zr) * sr): one rounding per operation, no fused multiply-add
    vf = ir.VectorType(_F32, lanes)
    ch = b.add(ch0, b.mul(n, _const(LANES)))
    y = b.fmul(b.sitofp(sums, vf), _load(b, scale, b.mul(ch, _const(4)), vf))
    y = b.fadd(y, _load(b, bias, b.mul(ch, _const(4)), vf))
    if residual:
        r = b.uitofp(_load(b, res, elem, ir.VectorType(_I8, lanes)), vf)
        y = b.fadd(y, b.fmul(b.fsub(r, _splat(b, res_zp, lanes)), _splat(b, res_scale, lanes)))
    if kind == "float32":
        _store(b, y, out, b.mul(elem, _const(4)))
        return
    # round half to even (the default rounding mode), clamp, narrow
    rint = b.module.declare_intrinsic(f"llvm.rint.v{lanes}f32", fnty=ir.FunctionType(vf, [vf]))
    q = b.call(rint, [y])
    lo, hi = _splat(b, qmin, lanes), _splat(b, qmax, lanes)
    q = b.select(b.fcmp_ordered("<", q, lo), lo, q)
    q = b.select(b.fcmp_ordered(">", q, hi), hi, q)
    _store(b, b.trunc(b.fptosi(q, ir.VectorType(_I32, lanes)), ir.VectorType(_I8, lanes)), out, elem)


def _epilogue_loop(builder, sums, count, rows, mr, nr, args, kind: str, residual: bool) -> None:
    """:func:`_store_outputs` for positions ``m < count`` and channel rows ``n < rows`` of the sums (the list of
    ``mr * nr`` ``<8 x i32>`` values), two rows (16 lanes) at a time: unrolled for a full ``mr x nr`` tile, else a
    loop over a copy of the sums in a small array."""
    b = builder

    def store(m, n, first, second) -> None:
        _store_outputs(b, first if second is None else _shuffle(b, first, second, list(range(2 * LANES))), m, n,
                       args, kind, residual)

    full = b.and_(b.icmp_signed("==", count, _const(mr)), b.icmp_signed("==", rows, _const(nr)))
    with b.if_else(full, likely=True) as (unrolled, looped):
        with unrolled:
            for m in range(mr):
                for n in range(0, nr, 2):
                    store(_const(m), _const(n), sums[m * nr + n], sums[m * nr + n + 1] if n + 1 < nr else None)
        with looped:
            array = cgutils.alloca_once(b, sums[0].type, size=mr * nr)
            for index, value in enumerate(sums):
                b.store(value, b.gep(array, [_const(index)]))
            with cgutils.for_range(b, count) as m_loop:
                m = m_loop.index
                with cgutils.for_range(b, b.udiv(b.add(rows, _const(1)), _const(2))) as pair_loop:
                    n = b.mul(pair_loop.index, _const(2))
                    first = b.load(b.gep(array, [b.add(b.mul(m, _const(nr)), n)]))
                    with b.if_else(b.icmp_signed("<", b.add(n, _const(1)), rows)) as (pair, one):
                        with pair:
                            second = b.load(b.gep(array, [b.add(b.add(b.mul(m, _const(nr)), n), _const(1))]))
                            store(m, n, first, second)
                        with one:
                            store(m, n, first, None)


def _epilogue(builder, sums, count, rows, mr, nr, args, use_stage, mode, has_res) -> None:
    """The epilogue of a tile: one loop per output mode, chosen once per tile (the mode flags are IR values)."""
    b = builder

    def branch(flag, if_true, if_false) -> None:
        with b.if_else(flag) as (then, otherwise):
            with then:
                if_true()
            with otherwise:
                if_false()

    def loop(kind: str, residual: bool = False):
        return lambda: _epilogue_loop(b, sums, count, rows, mr, nr, args, kind, residual)

    def with_residual(kind: str):
        return lambda: branch(b.icmp_signed("!=", has_res, _const(0)), loop(kind, True), loop(kind))

    def by_mode() -> None:
        branch(b.icmp_signed("==", mode, _const(0)), loop("int32"),
               lambda: branch(b.icmp_signed("==", mode, _const(1)), with_residual("float32"), with_residual("uint8")))

    branch(b.icmp_signed("!=", use_stage, _const(0)), loop("stage"), by_mode)


def _literal_width(width) -> int | None:
    """The vector width an intrinsic is typed with (a literal int), ``None`` while it is not literal yet; refuses a
    width the CPU cannot run, so that no instruction the CPU lacks is ever emitted."""
    if not isinstance(width, types.IntegerLiteral):
        return None
    reason = width_rejects(width.literal_value)
    if reason is not None:
        raise numba.core.errors.TypingError(f"cannot compile the {width.literal_value * 8}-bit SAD code: {reason}")
    return width.literal_value


def _make_sad_tile():
    i64, f32 = types.int64, types.float32
    u8_1d = types.Array(types.uint8, 1, "C")

    @intrinsic
    def _sad_tile(typingctx, width, addr, a_off, runs, run_steps, count, w, w_off, w_row_stride, rows,
                  out, out_off, out_pos_stride, stage, use_stage, mode, scale, bias, ch0,
                  res, res_zp, res_scale, has_res, qmin, qmax):
        """One ``MR x NR`` tile: SADs over ``runs x run_steps`` steps, then the epilogue for the valid positions
        (``count``) and 8-channel rows (``rows``).

        Position ``m``'s bytes of run ``r`` start at the address ``addr[r * POS_BLOCK + a_off + m]`` (``run_steps * 8``
        contiguous bytes); step ``t = r * run_steps + u`` of the packed weights is the row of ``ROW_BYTES`` at
        ``w_off + n * w_row_stride + t * ROW_BYTES``. ``out`` is the output as bytes, element
        ``out_off + m * out_pos_stride + 8n + lane``; ``stage`` (int32) receives the sums instead when
        ``use_stage``; ``mode`` is 0 (int32), 1 (float32) or 2 (uint8); ``scale``/``bias`` (float32) are read at
        ``ch0 + 8n + lane``; ``res`` (uint8) at the output element."""
        vec = _literal_width(width)
        if vec is None:
            return None
        mr, nr = TILES[vec]
        sig = types.none(width, types.Array(i64, 1, "C"), i64, i64, i64, i64, u8_1d, i64, i64, i64,
                         u8_1d, i64, i64, types.Array(types.int32, 1, "C"), i64, i64,
                         types.Array(f32, 1, "C"), types.Array(f32, 1, "C"), i64,
                         u8_1d, f32, f32, i64, f32, f32)

        def codegen(context, builder, signature, args):
            b = builder
            (_, addr_v, a_off_v, runs_v, run_steps_v, count_v, w_v, w_off_v, w_stride_v, rows_v,
             out_v, out_off_v, out_pos_v, stage_v, use_stage_v, mode_v, scale_v, bias_v, ch0_v,
             res_v, res_zp_v, res_scale_v, has_res_v, qmin_v, qmax_v) = args
            sa = signature.args
            addr_d = b.bitcast(_array_data(context, b, sa[1], addr_v), _I8.as_pointer())
            w_d = _array_data(context, b, sa[6], w_v)
            unit = _SadUnit(b, vec)
            accs = [[cgutils.alloca_once_value(b, ir.Constant(unit.acc_ty, None)) for _ in range(unit.parts)]
                    for _ in range(mr * nr)]
            # rows past the valid ones re-read the last valid row (their results are dropped)
            w_rows = [b.add(w_off_v, b.mul(b.select(b.icmp_signed("<", _const(n), rows_v), _const(n),
                                                    b.sub(rows_v, _const(1))), w_stride_v)) for n in range(nr)]
            with cgutils.for_range(b, runs_v) as run_loop:
                r = run_loop.index
                starts = []
                for m in range(mr):
                    slot = b.add(b.add(a_off_v, _const(m)), b.mul(r, _const(POS_BLOCK)))
                    starts.append(_load(b, addr_d, b.mul(slot, _const(8)), _I64))
                w_run = b.mul(b.mul(r, run_steps_v), _const(ROW_BYTES))
                with cgutils.for_range(b, run_steps_v) as loop:
                    u = loop.index
                    x_step = b.mul(u, _const(STEP))
                    xs_vec = [unit.broadcast(b.add(starts[m], x_step)) for m in range(mr)]
                    w_step = b.add(w_run, b.mul(u, _const(ROW_BYTES)))
                    for n in range(nr):
                        for part in range(unit.parts):
                            offset = b.add(b.add(w_rows[n], w_step), _const(part * unit.vin.count))
                            wv = _load(b, w_d, offset, unit.vin)
                            for m in range(mr):
                                slot = accs[m * nr + n][part]
                                b.store(unit.accumulate(b.load(slot), xs_vec[m], wv), slot)
            epi_args = (
                _array_data(context, b, sa[10], out_v), out_off_v, out_pos_v, _array_data(context, b, sa[13], stage_v),
                _array_data(context, b, sa[16], scale_v), _array_data(context, b, sa[17], bias_v), ch0_v,
                _array_data(context, b, sa[19], res_v), res_zp_v, res_scale_v, qmin_v, qmax_v, nr,
            )
            sums = [unit.finish([b.load(s) for s in parts]) for parts in accs]
            _epilogue(b, sums, count_v, rows_v, mr, nr, epi_args, use_stage_v, mode_v, has_res_v)
            return context.get_dummy_value()

        return sig, codegen

    return _sad_tile


_sad_tile = _make_sad_tile()


def _make_byte_ops():
    def _ptr(builder, address, ty=_I8):
        return builder.inttoptr(address, ty.as_pointer())

    @intrinsic
    def _copy_bytes(typingctx, dst, src, length):
        """Copies ``length`` bytes between integer addresses with 64-byte vector moves; reads and writes up to 63
        bytes past the end."""
        sig = types.none(types.int64, types.int64, types.int64)

        def codegen(context, builder, signature, args):
            vec = ir.VectorType(_I8, ROW_BYTES)
            chunks = builder.udiv(builder.add(args[2], _const(ROW_BYTES - 1)), _const(ROW_BYTES))
            with cgutils.for_range(builder, chunks) as loop:
                step = builder.mul(loop.index, _const(ROW_BYTES))
                v = builder.load(_ptr(builder, builder.add(args[1], step), vec), align=1)
                builder.store(v, _ptr(builder, builder.add(args[0], step), vec), align=1)
            return context.get_dummy_value()

        return sig, codegen

    @intrinsic
    def _copy_bytes_exact(typingctx, dst, src, length):
        """Copies exactly ``length`` bytes between integer addresses, one at a time."""
        sig = types.none(types.int64, types.int64, types.int64)

        def codegen(context, builder, signature, args):
            with cgutils.for_range(builder, args[2]) as loop:
                v = builder.load(_ptr(builder, builder.add(args[1], loop.index)))
                builder.store(v, _ptr(builder, builder.add(args[0], loop.index)))
            return context.get_dummy_value()

        return sig, codegen

    @intrinsic
    def _fill_bytes(typingctx, dst, length, value):
        """Sets ``length`` bytes at the integer address ``dst`` to ``value`` with 64-byte vector stores; writes up
        to 63 bytes past the end."""
        sig = types.none(types.int64, types.int64, types.uint8)

        def codegen(context, builder, signature, args):
            vec = ir.VectorType(_I8, ROW_BYTES)
            v = _splat(builder, args[2], ROW_BYTES)
            chunks = builder.udiv(builder.add(args[1], _const(ROW_BYTES - 1)), _const(ROW_BYTES))
            with cgutils.for_range(builder, chunks) as loop:
                address = builder.add(args[0], builder.mul(loop.index, _const(ROW_BYTES)))
                builder.store(v, _ptr(builder, address, vec), align=1)
            return context.get_dummy_value()

        return sig, codegen

    @intrinsic
    def _poke(typingctx, address, value):
        """Stores the int64 ``value`` at the integer ``address``."""
        sig = types.none(types.int64, types.int64)

        def codegen(context, builder, signature, args):
            builder.store(args[1], _ptr(builder, args[0], _I64), align=8)
            return context.get_dummy_value()

        return sig, codegen

    return _copy_bytes, _copy_bytes_exact, _fill_bytes, _poke


_copy_bytes, _copy_bytes_exact, _fill_bytes, _poke = _make_byte_ops()


# --------------------------------------------------------------------------------------------------------------
# numba kernels


# The helpers below take integer addresses rather than arrays: a call with array arguments updates their reference
# counts atomically, which costs on every call and makes the threads contend for the shared input's count.


@njit(cache=True, inline="always")
def _copy_checked(dst, src, src_end, length):  # pragma: no cover - compiled
    """Copies ``length`` bytes from ``src`` to ``dst`` (addresses) without reading at or past ``src_end``."""
    if src + length + ROW_BYTES <= src_end:
        _copy_bytes(dst, src, length)
    else:
        _copy_bytes_exact(dst, src, length)


@njit(cache=True)
def _gather_row(dst, x_base, x_end, n, oh, ow, g, height, width, channels, cg, kh, kw, sh, sw, ph, pw, dh, dw,
                zero_point):  # pragma: no cover - compiled
    """Patch row of position (n, oh, ow), group g, to the address ``dst``: ``kh*kw*cg`` bytes in (i, j, c)
    order, taps in the padding holding ``zero_point``. A kernel row inside the image is one copy when groups is 1
    and dw is 1. May write up to 63 bytes past the row."""
    iw0 = ow * sw - pw
    row_inside = channels == cg and dw == 1 and iw0 >= 0 and iw0 + kw <= width
    for i in range(kh):
        ih = oh * sh - ph + i * dh
        d0 = dst + i * kw * cg
        if ih < 0 or ih >= height:
            _fill_bytes(d0, kw * cg, zero_point)
        elif row_inside:
            _copy_checked(d0, x_base + ((n * height + ih) * width + iw0) * channels, x_end, kw * cg)
        else:
            for j in range(kw):
                iw = iw0 + j * dw
                if iw < 0 or iw >= width:
                    _fill_bytes(d0 + j * cg, cg, zero_point)
                else:
                    src = x_base + ((n * height + ih) * width + iw) * channels + g * cg
                    _copy_checked(d0 + j * cg, src, x_end, cg)


@njit(cache=True)
def _padded_row(dst, row, x_end, col_lo, col_hi, width, channels, zero_point):  # pragma: no cover - compiled
    """Columns ``col_lo..col_hi`` of the input row at address ``row`` to the address ``dst``, columns outside
    ``0..width-1`` holding ``zero_point``. In order left padding, inside, right padding, as each vector copy may
    write up to 63 bytes past its end."""
    lo = max(col_lo, 0)
    hi = min(col_hi, width - 1)
    if col_lo < lo:
        _fill_bytes(dst, (min(lo, col_hi + 1) - col_lo) * channels, zero_point)
    if lo <= hi:
        _copy_checked(dst + (lo - col_lo) * channels, row + lo * channels, x_end, (hi - lo + 1) * channels)
    right = max(hi + 1, col_lo)
    if right <= col_hi:
        _fill_bytes(dst + (right - col_lo) * channels, (col_hi - right + 1) * channels, zero_point)


@njit(cache=True)
def _block_runs(addr, count, p0, buf, x_base, x_end, zrun, layout, g, height, width, channels, cg, h_out, w_out, kh,
                kw, sh, sw, ph, pw, dh, dw, zero_point, k, row_bytes):  # pragma: no cover - compiled
    """Start addresses of the runs of the positions ``p0 + q``, ``q < count``, group g (see :func:`run_layout`),
    into ``addr[r * POS_BLOCK + q]``.

    A run inside the image is read in place; a run entirely in the padding reads ``zrun`` (bytes equal to the zero
    point). ``LAYOUT_ROWS``: the kernel rows of a segment of an output row that touches the left or right border are
    copied once, with their padding columns, to the buffer at address ``buf``. ``LAYOUT_DENSE``: every patch row is
    copied to ``buf + q * row_bytes``."""
    hw_out = h_out * w_out
    n = p0 // hw_out  # position p0 + q = (n, oh, ow), stepped without divisions
    oh = p0 % hw_out // w_out
    ow = p0 % w_out
    if layout == LAYOUT_ROWS:  # groups 1, dw 1: one run per kernel row, kw * C contiguous bytes
        # the positions of a segment of one output row read the same input rows, at columns stepping by sw: the
        # segment's kernel rows are read in place, or copied once with their padding columns when the segment
        # touches the left or right border
        used = 0
        q = 0
        step = sw * channels
        while q < count:
            seg = min(count - q, w_out - ow)
            col_lo = ow * sw - pw
            col_hi = (ow + seg - 1) * sw - pw + kw - 1
            inside = col_lo >= 0 and col_hi < width
            for i in range(kh):
                ih = oh * sh - ph + i * dh
                first = np.uint64(i * POS_BLOCK + q)  # unsigned indices: no wraparound test, the loops vectorise
                if ih < 0 or ih >= height:
                    for e in range(np.uint64(seg)):
                        addr[first + e] = zrun
                    continue
                row = x_base + (n * height + ih) * width * channels
                start = row + col_lo * channels
                if not inside:
                    _padded_row(buf + used, row, x_end, col_lo, col_hi, width, channels, zero_point)
                    start = buf + used
                    used += (col_hi - col_lo + 1) * channels
                for e in range(np.uint64(seg)):
                    addr[first + e] = start + np.int64(e) * step
            q += seg
            n, oh, ow = _next_position(n, oh, ow + seg - 1, h_out, w_out)  # after the segment's last position
    elif layout == LAYOUT_TAPS:  # one run per tap, the group's C/G channels
        for q in range(count):
            iw0 = ow * sw - pw
            ih = oh * sh - ph
            for i in range(kh):
                for j in range(kw):
                    iw = iw0 + j * dw
                    run = zrun
                    if 0 <= ih < height and 0 <= iw < width:
                        run = x_base + ((n * height + ih) * width + iw) * channels + g * cg
                    addr[(i * kw + j) * POS_BLOCK + q] = run
                ih += dh
            n, oh, ow = _next_position(n, oh, ow, h_out, w_out)
    else:  # LAYOUT_DENSE: the whole patch row copied, zero-padded to row_bytes
        for q in range(count):
            dst = buf + q * row_bytes
            _gather_row(dst, x_base, x_end, n, oh, ow, g, height, width, channels, cg, kh, kw, sh, sw, ph, pw, dh, dw,
                        zero_point)
            _fill_bytes(dst + k, row_bytes - k, 0)  # reduction padding: 0 against the 0 of the packed weights
            addr[q] = dst
            n, oh, ow = _next_position(n, oh, ow, h_out, w_out)


@njit(cache=True)
def _store_scalar(stage, count, rows, nr, c_first, og, out_bytes, elem0, out_channels, mode, scale, bias, sb0, res,
                  res_zp, res_scale, has_res, qmin, qmax):  # pragma: no cover - compiled
    """Epilogue of a staged tile (channels per group not a multiple of 8), element by element, with the float32
    operations of the vector epilogue. Channel ``c`` of the tile is group channel ``c_first + c``, output element
    ``elem0 + m * out_channels + c`` and scale/bias index ``sb0 + c``."""
    words = out_bytes[: out_bytes.shape[0] // 4 * 4]  # a uint8 output need not fill whole 4-byte words
    out_i32 = words.view(np.int32)
    out_f32 = words.view(np.float32)
    for m in range(count):
        for c in range(min(rows * LANES, og - c_first)):
            s = stage[(m * nr + c // LANES) * LANES + c % LANES]
            e = elem0 + m * out_channels + c
            if mode == 0:
                out_i32[e] = s
                continue
            y = np.float32(s) * scale[sb0 + c] + bias[sb0 + c]
            if has_res:
                y = y + (np.float32(res[e]) - res_zp) * res_scale
            if mode == 1:
                out_f32[e] = y
            else:
                q = np.rint(y)
                if q < qmin:
                    q = qmin
                if q > qmax:
                    q = qmax
                out_bytes[e] = np.uint8(np.int32(q))


def _unique_name(fn, name: str):
    """Gives the closure ``fn`` (one of several made from one ``def``) its own ``__name__`` and ``__qualname__``
    before numba sees it. numba names a compiled function's symbol after its qualname, argument types and a
    per-process counter; closures that share a qualname and argument types, compiled in different processes, can
    get the same symbol, and once loaded from the cache into one process a caller links to whichever came first
    (a width-0 plan driver ran the width-64 kernel and crashed; in the other order it returned wrong sums)."""
    fn.__name__ = fn.__qualname__ = name
    return fn


def _make_forward_kernel(width: int):
    """The forward kernel of one vector width (a compile-time constant of the closure, so numba caches one
    kernel per width, each under its own name, see :func:`_unique_name`) and its one-task function."""

    def _forward_chunk(x, w, out_bytes, scale, bias, res, ints, floats, chunk):  # pragma: no cover - compiled
        """Parallel task ``chunk`` (of ``num_chunks``) of Eq. 2 in integers (see :func:`_forward_kernel`; the plan's
        driver deals the chunks of every layer to its threads itself)."""
        n_img, height, width_in, channels, out_channels = ints[0], ints[1], ints[2], ints[3], ints[4]
        h_out, w_out, kh, kw, sh = ints[5], ints[6], ints[7], ints[8], ints[9]
        sw, ph, pw, dh, dw = ints[10], ints[11], ints[12], ints[13], ints[14]
        zero_point, layout, runs, run_steps, buf_bytes = np.uint8(ints[15]), ints[16], ints[17], ints[18], ints[19]
        mode, has_res, mr, nr, num_chunks = ints[20], ints[21], ints[22], ints[23], ints[24]
        channel_splits = ints[25]  # parallel tasks share a block of positions by channel tiles (small batches)
        res_zp, res_scale, qmin, qmax = floats[0], floats[1], floats[2], floats[3]
        groups, num_blocks, steps = w.shape[0], w.shape[1], w.shape[2]
        row_bytes = steps * STEP
        w_flat = w.reshape(-1)
        cg = channels // groups
        og = out_channels // groups
        k = kh * kw * cg
        use_stage = og % LANES != 0
        hw_out = h_out * w_out
        num_pos = n_img * hw_out
        num_tasks = (num_pos + POS_BLOCK - 1) // POS_BLOCK
        x_base = np.int64(x.ctypes.data)
        x_end = x_base + x.shape[0]
        channel_tiles = (num_blocks + nr - 1) // nr
        position_chunks = num_chunks // channel_splits
        buf = np.zeros(buf_bytes, dtype=np.uint8)  # copied kernel rows or patch rows
        zrun = np.full(kw * channels + _SLACK, zero_point, dtype=np.uint8)  # a run of padding
        addr = np.zeros(POS_BLOCK * runs, dtype=np.int64)  # (PB, runs) start addresses
        stage = np.zeros(mr * nr * LANES, dtype=np.int32)
        buf_base = np.int64(buf.ctypes.data)
        zrun_base = np.int64(zrun.ctypes.data)
        pos_chunk, split = chunk // channel_splits, chunk % channel_splits
        tile_lo = split * channel_tiles // channel_splits
        tile_hi = (split + 1) * channel_tiles // channel_splits
        first_task = pos_chunk * num_tasks // position_chunks
        for task in range(first_task, (pos_chunk + 1) * num_tasks // position_chunks):
            p0 = task * POS_BLOCK
            count = min(POS_BLOCK, num_pos - p0)
            for g in range(groups):
                _block_runs(addr, count, p0, buf_base, x_base, x_end, zrun_base, layout, g, height,
                            width_in, channels, cg, h_out, w_out, kh, kw, sh, sw, ph, pw, dh, dw, zero_point, k,
                            row_bytes)
                for q in range(count, (count + mr - 1) // mr * mr):  # the last tile repeats the last position
                    for r in range(runs):
                        addr[r * POS_BLOCK + q] = addr[r * POS_BLOCK + count - 1]
                # tiles: channel rows outside (their weights stay in L1), positions inside
                for b0 in range(tile_lo * nr, tile_hi * nr, nr):
                    rows = min(nr, num_blocks - b0)
                    w_off = (g * num_blocks + b0) * steps * ROW_BYTES
                    c_first = b0 * LANES
                    sb0 = g * num_blocks * LANES + c_first
                    for m0 in range(0, count, mr):
                        cnt = min(mr, count - m0)
                        elem0 = (p0 + m0) * out_channels + g * og + c_first
                        _sad_tile(width, addr, m0, runs, run_steps, cnt, w_flat, w_off, steps * ROW_BYTES,
                                  rows, out_bytes, elem0, out_channels, stage, use_stage, mode, scale, bias, sb0,
                                  res, res_zp, res_scale, has_res, qmin, qmax)
                        if use_stage:
                            _store_scalar(stage, cnt, rows, nr, c_first, og, out_bytes, elem0, out_channels, mode,
                                          scale, bias, sb0, res, res_zp, res_scale, has_res, qmin, qmax)

    _forward_chunk = njit(cache=True, nogil=True)(_unique_name(_forward_chunk, f"_forward_chunk_width{width}"))

    def _forward_kernel(x, w, out_bytes, scale, bias, res, ints, floats):  # pragma: no cover - compiled
        """Eq. 2 in integers. ``x``: the NHWC input, flat uint8; ``w``: packed weights (G, B, S, 8, 8);
        ``out_bytes``: the NHWC output (N, Ho, Wo, O) as flat bytes of int32 / float32 / uint8 (``mode`` 0 / 1 /
        2); ``scale`` and ``bias``: float32 (G * 8B,), each group's channels padded to 8B; ``res``: the NHWC
        residual, flat uint8; ``ints`` and ``floats``: the scalar arguments in the order of :data:`_INT_ARGS` and
        :data:`_FLOAT_ARGS` (few arguments: numba's dispatcher types each one on every call). ``layout``,
        ``runs``, ``run_steps``: see :func:`run_layout`. Runs the ``num_chunks`` tasks of :func:`_forward_chunk`
        in parallel."""
        for chunk in prange(ints[24]):
            _forward_chunk(x, w, out_bytes, scale, bias, res, ints, floats, chunk)

    kernel = njit(parallel=True, cache=True, nogil=True)(_unique_name(_forward_kernel, f"_forward_kernel_width{width}"))
    return kernel, _forward_chunk


_KERNEL_PAIRS = {vec: _make_forward_kernel(vec) for vec in TILES}
_FORWARD_KERNELS = {vec: pair[0] for vec, pair in _KERNEL_PAIRS.items()}  # one layer, parallel over its chunks
_FORWARD_CHUNKS = {vec: pair[1] for vec, pair in _KERNEL_PAIRS.items()}  # one chunk (the plan's driver)


# --------------------------------------------------------------------------------------------------------------
# Peak of the SAD instruction: the yardstick of ``frugalvision bench quant`` (the timed loop around this intrinsic
# lives in :mod:`frugalvision.bench.sad_peak`)

PEAK_TILE = (4, 4)  # the peak loop's register tile: 4 x 4 accumulators, both operands loaded as full vectors


def _make_peak_loop():
    @intrinsic
    def sad_peak_loop(typingctx, width, x, w, vectors, reps):
        """``reps`` times: a 4 x 4 register tile of SADs over ``vectors`` full vectors of ``x`` rows (stride 1024 + 64
        bytes) against ``w`` rows (same stride); returns the sum of all accumulators (so nothing is optimised away).
        The generic form (width 0) uses 64-byte vectors."""
        vec = _literal_width(width)
        if vec is None:
            return None
        sig = types.int64(width, x, w, types.int64, types.int64)
        rows_a, rows_b = PEAK_TILE

        def codegen(context, builder, signature, args):
            b = builder
            x_d = _array_data(context, b, signature.args[1], args[1])
            w_d = _array_data(context, b, signature.args[2], args[2])
            unit = _SadUnit(b, vec)
            size = unit.vin.count
            accs = [cgutils.alloca_once_value(b, ir.Constant(unit.acc_ty, None)) for _ in range(rows_a * rows_b)]
            with cgutils.for_range(b, args[4]):
                with cgutils.for_range(b, args[3]) as loop:
                    off = b.mul(loop.index, _const(size))
                    xs = [_load(b, x_d, b.add(off, _const(a * PEAK_ROW_STRIDE)), unit.vin) for a in range(rows_a)]
                    for c in range(rows_b):
                        wv = _load(b, w_d, b.add(off, _const(c * PEAK_ROW_STRIDE)), unit.vin)
                        for a in range(rows_a):
                            slot = accs[a * rows_b + c]
                            b.store(unit.accumulate(b.load(slot), xs[a], wv), slot)
            total = ir.Constant(_I64, 0)
            for slot in accs:
                acc = b.load(slot)
                for lane in range(acc.type.count):
                    total = b.add(total, b.zext(b.extract_element(acc, ir.Constant(_I32, lane)), _I64)
                                  if acc.type.element == _I32 else b.extract_element(acc, ir.Constant(_I32, lane)))
            return total

        return sig, codegen

    return sad_peak_loop


PEAK_ROW_STRIDE = 1024 + 64  # bytes between the rows of the peak loop (not a multiple of 4 KiB)
sad_peak_loop = _make_peak_loop()


# --------------------------------------------------------------------------------------------------------------
# torch-facing functions


def run_layout(kernel_size: tuple[int, int], channels_per_group: int, groups: int, dilation_w: int,
               ) -> tuple[int, int, int]:
    """How the kernels read a patch row ``Xcol[p, :]`` (``(i, j, c)`` order): ``(layout, runs, run_steps)``, the row
    being ``runs`` runs of ``run_steps * 8`` contiguous bytes.

    * ``LAYOUT_ROWS`` (groups 1, dilation 1 along the width, ``kw * C`` a multiple of 8): one run per kernel row,
      read in place from the input (rows cut by the left or right border are copied with their padding).
    * ``LAYOUT_TAPS`` (``C/G`` a multiple of 8): one run per tap, in place.
    * ``LAYOUT_DENSE`` (otherwise): the whole row is copied, padded with zeros to ``ceil(K / 8) * 8`` bytes.
    """
    kh, kw = kernel_size
    if groups == 1 and dilation_w == 1 and kw * channels_per_group % STEP == 0:
        return LAYOUT_ROWS, kh, kw * channels_per_group // STEP
    if channels_per_group % STEP == 0:
        return LAYOUT_TAPS, kh * kw, channels_per_group // STEP
    return LAYOUT_DENSE, 1, -(-kh * kw * channels_per_group // STEP)


def _buffer_bytes(layout: int, row_bytes: int, kh: int, kw: int, stride_w: int, channels: int) -> int:
    """Bytes of a task's copy buffer: kernel rows with padding columns (``LAYOUT_ROWS``, at most ``kh`` rows of
    ``(sw * len + kw) * C`` bytes per output-row segment of ``len`` positions) or patch rows (``LAYOUT_DENSE``)."""
    if layout == LAYOUT_ROWS:
        return kh * POS_BLOCK * (stride_w + kw) * channels + _SLACK
    return POS_BLOCK * row_bytes + _SLACK


def _parallel_split(num_tasks: int, channel_tiles: int, threads: int) -> tuple[int, int]:
    """``(num_chunks, channel_splits)``: the parallel tasks of a call. Blocks of positions are dealt out to at most
    ``threads * 8`` chunks; where there are fewer blocks than threads (a small batch on a late stage: ResNet-20's
    8x8 maps at batch 1 are one block), each block's channel tiles are split between ``channel_splits`` chunks so
    that every thread has work."""
    if num_tasks == 0 or num_tasks >= threads or channel_tiles < 2:
        return max(1, min(num_tasks, threads * _TASKS_PER_THREAD)), 1
    splits = min(channel_tiles, -(-threads // num_tasks))
    return num_tasks * splits, splits


def per_group_padded(values: Tensor | None, groups: int, blocks: int, fill: float) -> np.ndarray:
    """A layer's (O,) scale or bias as the kernels read it: float32 (G * 8B,), each group's channels padded to 8B
    with ``fill`` (``None``: all ``fill``)."""
    if values is None:
        return np.full(groups * blocks * LANES, fill, dtype=np.float32)
    array = values.detach().to(torch.float32).contiguous().numpy()
    og = array.shape[0] // groups
    if og == blocks * LANES:
        return array
    out = np.full((groups, blocks * LANES), fill, dtype=np.float32)
    out[:, :og] = array.reshape(groups, og)
    return out.reshape(-1)


_NO_BYTES = np.zeros(ROW_BYTES, dtype=np.uint8)
_INT_ARGS = ("n", "height", "width", "channels", "out_channels", "h_out", "w_out", "kh", "kw", "sh", "sw", "ph",
             "pw", "dh", "dw", "zero_point", "layout", "runs", "run_steps", "buf_bytes", "mode", "has_residual", "mr",
             "nr", "num_chunks", "channel_splits")
_FLOAT_ARGS = ("residual_zero_point", "residual_scale", "qmin", "qmax")
_OUTPUT_DTYPES = {"int32": torch.int32, "float32": torch.float32, "uint8": torch.uint8}


def kernel_arguments(width: int, input_shape: tuple[int, int, int, int], packed_shape: tuple[int, ...],
                     out_channels: int, kernel_size: tuple[int, int], stride: tuple[int, int],
                     padding: tuple[int, int], dilation: tuple[int, int], zero_point: int, has_residual: bool,
                     residual_zero_point: int, residual_scale: float, output: str, qmin: int, qmax: int,
                     threads: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """The forward kernel's scalar arguments for one call: ``ints`` (int64, in the order of :data:`_INT_ARGS`),
    ``floats`` (float32, :data:`_FLOAT_ARGS`) and the output shape (N, Ho, Wo, O), for an (N, H, W, C) input and
    packed weights of shape (G, B, S, 8, 8) run on ``threads`` threads."""
    n, height, width_in, channels = input_shape
    groups = packed_shape[0]
    kh, kw = kernel_size
    h_out, w_out = conv_output_size(height, width_in, kernel_size, stride, padding, dilation)
    layout = run_layout(kernel_size, channels // groups, groups, dilation[1])
    ints = np.array([
        n, height, width_in, channels, out_channels, h_out, w_out, kh, kw, *stride, *padding, *dilation, zero_point,
        *layout, _buffer_bytes(layout[0], packed_shape[2] * STEP, kh, kw, stride[1], channels), OUTPUT_MODES[output],
        has_residual, *TILES[width],
        *_parallel_split(-(-n * h_out * w_out // POS_BLOCK), -(-packed_shape[1] // TILES[width][1]), threads),
    ], dtype=np.int64)
    floats = np.array([residual_zero_point, residual_scale, qmin, qmax], dtype=np.float32)
    return ints, floats, (n, h_out, w_out, out_channels)


def adder2d_u8_forward(
    width: int, x: Tensor, packed: Tensor, out_channels: int, kernel_size: tuple[int, int],
    stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int], zero_point: int,
    scale: Tensor | None, bias: Tensor | None, residual: Tensor | None, residual_zero_point: int,
    residual_scale: float, output: str, qmin: int, qmax: int,
) -> Tensor:
    """The ``frugalvision::adder2d_u8`` forward (arguments checked by :func:`frugalvision.ops.adder2d_u8.adder2d_u8`)
    with the kernels of vector ``width`` (64, 32 or 0, see :data:`WIDTHS`): ``x`` uint8 (N, H, W, C) contiguous,
    ``packed`` uint8 (G, B, S, 8, 8); returns (N, Ho, Wo, O) int32 / float32 / uint8."""
    groups, blocks = packed.shape[0], packed.shape[1]
    ints, floats, out_shape = kernel_arguments(
        width, tuple(x.shape), tuple(packed.shape), out_channels, kernel_size, stride, padding, dilation, zero_point,
        residual is not None, residual_zero_point, residual_scale, output, qmin, qmax, sync_threads())
    out = torch.empty(out_shape, dtype=_OUTPUT_DTYPES[output])
    _FORWARD_KERNELS[width](
        x.view(-1).numpy(), packed.numpy(), out.view(-1).view(torch.uint8).numpy(),
        per_group_padded(scale, groups, blocks, 1.0), per_group_padded(bias, groups, blocks, 0.0),
        _NO_BYTES if residual is None else residual.view(-1).numpy(), ints, floats,
    )
    return out
