"""Sixteen-lane vectors for numba kernels: `I32x16` (<16 x i32>) and `F32x16` (<16 x float>).

numba vectorizes loops on its own, but not the instructions quantized products live on (byte dot
products, dot.py). These few intrinsics let a kernel hold vectors in registers and say exactly
what each lane does; they are plain LLVM vector IR, which LLVM lowers for any CPU (a 16-lane
vector is one AVX-512 register, two AVX2 ones, four NEON ones).
"""
from __future__ import annotations

import operator
import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, lower_builtin, models, overload, register_model, type_callable

from .isa import target_features

# x86 converts halves with F16C, aarch64 always can; elsewhere load_f16 converts in integer code
HARDWARE_F16 = bool(target_features().get("f16c")) or platform.machine().lower() in ("aarch64", "arm64")

class Vec(types.Type):
    def __init__(self, lane: str):
        self.lane = lane
        super().__init__(name=f"{lane}x16")


I32x16, F32x16 = Vec("i32"), Vec("f32")
_I32, _F32, _I8 = ir.IntType(32), ir.FloatType(), ir.IntType(8)


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(_I32 if fe_type.lane == "i32" else _F32, 16))


def _vector(lane_type, count=16):
    return ir.VectorType(lane_type, count)


def _address(context, builder, array_type, array, index, pointee):
    """Pointer to element `index` of a contiguous array, cast to point at `pointee`."""
    data = cgutils.create_struct_proxy(array_type)(context, builder, value=array).data
    return builder.bitcast(builder.gep(data, [index]), pointee.as_pointer())


def _prefetch(builder, ptr):
    """llvm.prefetch of the line at ptr (an i8*): for reading, into every cache level."""
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [_I8.as_pointer(), _I32, _I32, _I32]), "llvm.prefetch.p0")
    builder.call(fn, [ptr, _I32(0), _I32(3), _I32(1)])


def _float_call(builder, name, *operands):
    """The LLVM intrinsic `name` (llvm.rint, llvm.minnum, ...) on <16 x float> operands."""
    f32x16 = _vector(_F32)
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f32x16, [f32x16] * len(operands)),
                                        f"{name}.v16f32")
    return builder.call(fn, operands)


def _splat(builder, value, lane_type):
    vec = builder.insert_element(ir.Constant(_vector(lane_type), ir.Undefined), value, _I32(0))
    return builder.shuffle_vector(vec, vec, ir.Constant(_vector(_I32), [0] * 16))


# --- loads and stores (unaligned; `index` counts array elements) ---

def _plain_load(lane_type, vector_type, doc: str):
    """An intrinsic loading 16 lanes of `lane_type` as they are in memory."""
    @intrinsic
    def load(typingctx, array, index):
        def codegen(context, builder, sig, args):
            return builder.load(_address(context, builder, sig.args[0], args[0], args[1], _vector(lane_type)), align=1)
        return vector_type(array, index), codegen
    load.__doc__ = doc
    return load


load_bytes = _plain_load(_I32, I32x16, "64 bytes as 16 lanes of 4 bytes (int32) from element `index` of any array.")
load_f32 = _plain_load(_F32, F32x16, "16 floats of a float32 array.")


@intrinsic
def load_f16(typingctx, array, index):
    """16 half floats (a uint16 array of their bits), widened."""
    def codegen(context, builder, sig, args):
        if HARDWARE_F16:
            ptr = _address(context, builder, sig.args[0], args[0], args[1], _vector(ir.HalfType()))
            return builder.fpext(builder.load(ptr, align=1), _vector(_F32))
        ptr = _address(context, builder, sig.args[0], args[0], args[1], _vector(ir.IntType(16)))
        return _f16_bits_to_f32(builder, builder.zext(builder.load(ptr, align=1), _vector(_I32)))
    return F32x16(array, index), codegen


def _f16_bits_to_f32(builder, h):
    """Exact half -> float on 32-bit lanes holding half bits, for CPUs without a conversion
    instruction (LLVM would call a runtime function numba does not link): exponent and mantissa
    shifted into place and scaled by 2^112 (which also normalizes subnormals); inf and NaN kept."""
    def c(v):
        return ir.Constant(_vector(_I32), [v] * 16)
    magnitude = builder.shl(builder.and_(h, c(0x7FFF)), c(13))
    scaled = builder.fmul(builder.bitcast(magnitude, _vector(_F32)), ir.Constant(_vector(_F32), [2.0 ** 112] * 16))
    special = builder.icmp_unsigned(">=", builder.and_(h, c(0x7C00)), c(0x7C00))
    bits = builder.select(special, builder.or_(magnitude, c(0x7F800000)), builder.bitcast(scaled, _vector(_I32)))
    return builder.bitcast(builder.or_(bits, builder.shl(builder.and_(h, c(0x8000)), c(16))), _vector(_F32))


def _load_i8(vector_type, doc: str):
    """An intrinsic loading 16 bytes of an int8 array (signed) or uint8 array (unsigned) as 16
    lanes of `vector_type`."""
    @intrinsic
    def load(typingctx, array, index):
        def codegen(context, builder, sig, args):
            ptr = _address(context, builder, sig.args[0], args[0], args[1], _vector(_I8))
            signed = sig.args[0].dtype.signed
            if vector_type == F32x16:
                lanes, convert = _F32, builder.sitofp if signed else builder.uitofp
            else:
                lanes, convert = _I32, builder.sext if signed else builder.zext
            return convert(builder.load(ptr, align=1), _vector(lanes))
        return vector_type(array, index), codegen
    load.__doc__ = doc
    return load


load_i8 = _load_i8(F32x16, "16 bytes of an int8 array (signed) or uint8 array (unsigned), as floats.")
load_i8_ints = _load_i8(I32x16, "16 bytes of an int8 array (signed) or uint8 array (unsigned), as int32.")


def load_lanes(array, index):
    """16 floats of a float32 array, or of a uint16 array holding half floats (a float16 KV cache)."""


@overload(load_lanes)
def _load_lanes(array, index):
    if array.dtype == types.uint16:
        return lambda array, index: load_f16(array, index)
    if array.dtype == types.float32:
        return lambda array, index: load_f32(array, index)


def _plain_store(vector_type, doc: str):
    """An intrinsic storing a `vector_type` (its 64 bytes as they are) into an array from element `index` on."""
    @intrinsic
    def store(typingctx, array, index, value):
        if value != vector_type:
            return None
        def codegen(context, builder, sig, args):
            ptr = _address(context, builder, sig.args[0], args[0], args[1], args[2].type)
            builder.store(args[2], ptr, align=1)
        return types.none(array, index, value), codegen
    store.__doc__ = doc
    return store


store_f32 = _plain_store(F32x16, "16 floats into a float32 array.")
store_i32 = _plain_store(I32x16, "16 int32 into any array, as their bytes (element `index` on).")


@intrinsic
def store_rounded_i8(typingctx, array, index, value):
    """16 floats rounded to the nearest integer (ties to even, as np.rint), at most 127, stored as
    16 int8 (values known to be >= -128)."""
    def codegen(context, builder, sig, args):
        rounded = _float_call(builder, "llvm.minnum", _float_call(builder, "llvm.rint", args[2]),
                              ir.Constant(_vector(_F32), [127.0] * 16))
        ptr = _address(context, builder, sig.args[0], args[0], args[1], _vector(_I8))
        builder.store(builder.fptosi(rounded, _vector(_I8)), ptr, align=1)
    return types.none(array, index, value), codegen


@intrinsic
def prefetch(typingctx, array, index):
    """Hint that the cache line at array[index] will be read soon (may be past the end: a
    prefetch never faults). Streams of weights outrun the hardware prefetcher without it."""
    def codegen(context, builder, sig, args):
        _prefetch(builder, _address(context, builder, sig.args[0], args[0], args[1], _I8))
    return types.none(array, index), codegen


@intrinsic(prefer_literal=True)
def prefetch_lines(typingctx, array, index, offset, nbytes):
    """prefetch() for each 64-byte line of the nbytes that start `offset` bytes past array[index]
    (offset and nbytes literal ints), unrolled when compiled. The same as a loop in numba over the
    lines, which cost far more than the prefetches: it divided by array.itemsize at run time (an
    `idiv`, ~40 cycles on a Zen 1) and its branches kept numba from pruning the reference counts of
    the weight arrays (~20 atomic increments and decrements), at every block of every product."""
    if not all(isinstance(x, types.IntegerLiteral) for x in (offset, nbytes)):
        raise TypeError("prefetch_lines: offset and nbytes must be literal ints")
    start, count = offset.literal_value, nbytes.literal_value

    def codegen(context, builder, sig, args):
        base = _address(context, builder, sig.args[0], args[0], args[1], _I8)
        for line in range(start, start + count, 64):
            _prefetch(builder, builder.gep(base, [ir.Constant(ir.IntType(64), line)]))
    return types.none(array, index, offset, nbytes), codegen


# --- making and converting vectors ---

@intrinsic
def splat_i32(typingctx, value):
    def codegen(context, builder, sig, args):
        return _splat(builder, context.cast(builder, args[0], sig.args[0], types.int32), _I32)
    return I32x16(value), codegen


@intrinsic
def splat_f32(typingctx, value):
    def codegen(context, builder, sig, args):
        return _splat(builder, context.cast(builder, args[0], sig.args[0], types.float32), _F32)
    return F32x16(value), codegen


@intrinsic
def f32_bits(typingctx, value):
    """A float32's bits as a uint32 (a scalar, not a vector)."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(context.cast(builder, args[0], sig.args[0], types.float32), _I32)
    return types.uint32(value), codegen


@intrinsic
def f32_from_bits(typingctx, bits):
    """The float32 whose bits are `bits` (a uint32)."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(context.cast(builder, args[0], sig.args[0], types.uint32), _F32)
    return types.float32(bits), codegen


@intrinsic
def to_f32(typingctx, vec):
    def codegen(context, builder, sig, args):
        return builder.sitofp(args[0], _vector(_F32))
    return F32x16(vec), codegen


# --- arithmetic: + - * between vectors of one kind, / between float vectors, & | between int vectors, shifts by an int ---
# Typed and lowered as numba's own operators are (type_callable, lower_builtin), not as an @overload:
# numba compiles an overload's Python function once per argument types in every process, which no
# cache keeps (0.19 s of a fresh start's compiling, Zen 3).

def _register(python_op, result, lowered_on, codegen):
    """python_op(a, b) on vectors: of type result(a, b) where that is not None, emitted by
    codegen(context, builder, sig, args) for argument types lowered_on (type classes)."""
    @type_callable(python_op)
    def _typer(context):
        return result

    lower_builtin(python_op, *lowered_on)(codegen)


def _binary(int_op, float_op):
    def codegen(context, builder, sig, args):
        return getattr(builder, int_op if sig.args[0].lane == "i32" else float_op)(args[0], args[1])
    return codegen


def _shift(method):
    def codegen(context, builder, sig, args):
        n = context.cast(builder, args[1], sig.args[1], types.int32)
        return getattr(builder, method)(args[0], _splat(builder, n, _I32))
    return codegen


_same = lambda a, b: a if isinstance(a, Vec) and a == b else None  # noqa: E731
_ints = lambda a, b: a if a == I32x16 and b == I32x16 else None  # noqa: E731
_by_int = lambda a, b: a if a == I32x16 and isinstance(b, types.Integer) else None  # noqa: E731
_register(operator.add, _same, (Vec, Vec), _binary("add", "fadd"))
_register(operator.sub, _same, (Vec, Vec), _binary("sub", "fsub"))
_register(operator.mul, _same, (Vec, Vec), _binary("mul", "fmul"))
_register(operator.truediv, lambda a, b: a if a == F32x16 and b == F32x16 else None, (Vec, Vec),
          _binary("sdiv", "fdiv"))
_register(operator.and_, _ints, (Vec, Vec), _binary("and_", "and_"))
_register(operator.or_, _ints, (Vec, Vec), _binary("or_", "or_"))
_register(operator.rshift, _by_int, (Vec, types.Integer), _shift("lshr"))
_register(operator.lshift, _by_int, (Vec, types.Integer), _shift("shl"))


# --- exp, for softmax: numba calls libm's expf one value at a time, the cost of attention ---

_EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)


@intrinsic
def exp_f32(typingctx, vec):
    """e^x per lane, to ~1 ulp (Cephes' expf: x = n ln2 + r, a degree-6 polynomial in r, times
    2^n made in the exponent bits); x is clamped to [-87.3, 88], so exp(-inf) gives ~1e-38, not 0."""
    def codegen(context, builder, sig, args):
        f32x16, i32x16 = _vector(_F32), _vector(_I32)

        def c(v):
            return ir.Constant(f32x16, [v] * 16)

        def call(name, *operands):
            return _float_call(builder, name, *operands)
        x = call("llvm.minnum", call("llvm.maxnum", args[0], c(-87.3)), c(88.0))
        n = call("llvm.rint", builder.fmul(x, c(1.4426950408889634)))
        r = builder.fsub(builder.fsub(x, builder.fmul(n, c(0.693359375))), builder.fmul(n, c(-2.12194440e-4)))
        p = c(_EXP_POLY[0])
        for coefficient in _EXP_POLY[1:]:
            p = builder.fadd(builder.fmul(p, r), c(coefficient))
        p = builder.fadd(builder.fadd(builder.fmul(builder.fmul(p, r), r), r), c(1.0))
        exponent = builder.shl(builder.add(builder.fptosi(n, i32x16), ir.Constant(i32x16, [127] * 16)),
                               ir.Constant(i32x16, [23] * 16))
        return builder.fmul(p, builder.bitcast(exponent, f32x16))
    return F32x16(vec), codegen


def _reduce(name, method):
    @intrinsic
    def reduce(typingctx, vec):
        """One lane's worth of the 16, combined in lane order (a fixed order: the same result
        for the same lanes, whatever the CPU)."""
        def codegen(context, builder, sig, args):
            return method(builder, name, args[0])
        return types.float32(vec), codegen
    return reduce


def _call_reduce(builder, name, operands, types_, fastmath=()):
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_F32, types_), name)
    return builder.call(fn, operands, fastmath=fastmath)


sum_lanes = _reduce("llvm.vector.reduce.fadd.v16f32", lambda b, n, v: _call_reduce(
    b, n, [ir.Constant(_F32, 0.0), v], [_F32, _vector(_F32)]))
# (told there are no NaNs, LLVM takes the maximum as a tree of vector maxima, not 15 scalar ones)
max_lanes = _reduce("llvm.vector.reduce.fmax.v16f32",
                    lambda b, n, v: _call_reduce(b, n, [v], [_vector(_F32)], ("nnan",)))
min_lanes = _reduce("llvm.vector.reduce.fmin.v16f32",
                    lambda b, n, v: _call_reduce(b, n, [v], [_vector(_F32)], ("nnan",)))
