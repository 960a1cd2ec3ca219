"""Sixteen-lane vectors for numba kernels: `I32x16` (<16 x i32>) and `F32x16` (<16 x float>).

numba vectorizes loops on its own, but not the one instruction quantized products live on: the
byte dot product (x86 `vpdpbusd`: 16 lanes, each summing four u8 x s8 products into an int32).
These few intrinsics let a kernel hold vectors in registers and say exactly what each lane does;
LLVM lowers them to whatever the CPU has. `dpbusd` is the one CPU-specific operation: the VNNI
instruction where the CPU has it (checked when the kernel is compiled, and numba's cache is per
CPU), otherwise the same sums in portable vector code. Setting LLAMBA_PORTABLE_KERNELS=1 forces
the portable path (the tests run both); give it its own NUMBA_CACHE_DIR, as numba's cache does not
know about the switch.
"""
from __future__ import annotations

import operator
import os

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

HAS_VNNI = (llvm.get_host_cpu_features().get("avx512vnni", False)
            and os.environ.get("LLAMBA_PORTABLE_KERNELS", "0") in ("", "0"))


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


def _splat(builder, value, lane_type):
    vec = builder.insert_element(ir.Constant(_vector(lane_type), ir.Undefined), value, _I32(0))
    return builder.shuffle_vector(vec, vec, ir.Constant(_vector(_I32), [0] * 16))


# --- loads and stores (unaligned; `index` counts array elements) ---

@intrinsic
def load_bytes(typingctx, array, index):
    """64 bytes from a uint8 array as 16 lanes of 4 bytes each."""
    def codegen(context, builder, sig, args):
        ptr = _address(context, builder, sig.args[0], args[0], args[1], _vector(_I32))
        return builder.load(ptr, align=1)
    return I32x16(array, index), codegen


@intrinsic
def load_f16(typingctx, array, index):
    """16 half floats (a uint16 array of their bits), widened."""
    def codegen(context, builder, sig, args):
        ptr = _address(context, builder, sig.args[0], args[0], args[1], _vector(ir.HalfType()))
        return builder.fpext(builder.load(ptr, align=1), _vector(_F32))
    return F32x16(array, index), codegen


@intrinsic
def load_i8(typingctx, array, index):
    """16 bytes of an int8 array (signed) or uint8 array (unsigned), as floats."""
    def codegen(context, builder, sig, args):
        ptr = _address(context, builder, sig.args[0], args[0], args[1], _vector(_I8))
        convert = builder.sitofp if sig.args[0].dtype.signed else builder.uitofp
        return convert(builder.load(ptr, align=1), _vector(_F32))
    return F32x16(array, index), codegen


@intrinsic
def load_f32(typingctx, array, index):
    def codegen(context, builder, sig, args):
        ptr = _address(context, builder, sig.args[0], args[0], args[1], _vector(_F32))
        return builder.load(ptr, align=1)
    return F32x16(array, index), codegen


@intrinsic
def store_f32(typingctx, array, index, value):
    def codegen(context, builder, sig, args):
        ptr = _address(context, builder, sig.args[0], args[0], args[1], _vector(_F32))
        builder.store(args[2], ptr, align=1)
    return types.none(array, index, value), codegen


@intrinsic
def prefetch(typingctx, array, index):
    """Hint that the cache line at array[index] will be read soon (may be past the end: a
    prefetch never faults). Streams of weights outrun the hardware prefetcher without it."""
    def codegen(context, builder, sig, args):
        ptr = _address(context, builder, sig.args[0], args[0], args[1], _I8)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [_I8.as_pointer(), _I32, _I32, _I32]),
            "llvm.prefetch.p0")
        builder.call(fn, [ptr, _I32(0), _I32(3), _I32(1)])
    return types.none(array, index), codegen


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
def to_f32(typingctx, vec):
    def codegen(context, builder, sig, args):
        return builder.sitofp(args[0], _vector(_F32))
    return F32x16(vec), codegen


# --- the byte dot product ---

def _dpbusd_portable(builder, acc, u8, s8):
    """acc[i] + sum_j u8[4i + j] * s8[4i + j], in generic vector IR."""
    wide = _vector(_I32, 64)
    products = builder.mul(builder.zext(builder.bitcast(u8, _vector(_I8, 64)), wide),
                           builder.sext(builder.bitcast(s8, _vector(_I8, 64)), wide))
    for j in range(4):
        lanes = ir.Constant(_vector(_I32), [4 * i + j for i in range(16)])
        acc = builder.add(acc, builder.shuffle_vector(products, products, lanes))
    return acc


@intrinsic
def dpbusd(typingctx, acc, u8, s8x4):
    """acc + per lane: the 4 unsigned bytes of `u8` times the 4 signed bytes of the int32
    `s8x4` (the same 4 for every lane), summed. Exact integer arithmetic."""
    def codegen(context, builder, sig, args):
        acc_v, u8_v = args[0], args[1]
        s8_v = _splat(builder, context.cast(builder, args[2], sig.args[2], types.int32), _I32)
        if not HAS_VNNI:
            return _dpbusd_portable(builder, acc_v, u8_v, s8_v)
        vec = _vector(_I32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec, vec]),
                                            "llvm.x86.avx512.vpdpbusd.512")
        return builder.call(fn, [acc_v, u8_v, s8_v])
    return I32x16(acc, u8, s8x4), codegen


# --- arithmetic: + - * between vectors of one kind, & | between int vectors, shifts by an int ---

def _binary(int_op, float_op):
    @intrinsic
    def op(typingctx, a, b):
        def codegen(context, builder, sig, args):
            method = int_op if sig.args[0].lane == "i32" else float_op
            return getattr(builder, method)(args[0], args[1])
        return a(a, b), codegen
    return op


def _shift(method):
    @intrinsic
    def op(typingctx, vec, count):
        def codegen(context, builder, sig, args):
            n = context.cast(builder, args[1], sig.args[1], types.int32)
            return getattr(builder, method)(args[0], _splat(builder, n, _I32))
        return I32x16(vec, count), codegen
    return op


def _register(python_op, impl, accepts):
    @overload(python_op)
    def _ol(a, b):
        if accepts(a, b):
            return lambda a, b: impl(a, b)


_same = lambda a, b: isinstance(a, Vec) and a == b  # noqa: E731
_ints = lambda a, b: a == I32x16 and b == I32x16  # noqa: E731
_by_int = lambda a, b: a == I32x16 and isinstance(b, types.Integer)  # noqa: E731
_register(operator.add, _binary("add", "fadd"), _same)
_register(operator.sub, _binary("sub", "fsub"), _same)
_register(operator.mul, _binary("mul", "fmul"), _same)
_register(operator.and_, _binary("and_", "and_"), _ints)
_register(operator.or_, _binary("or_", "or_"), _ints)
_register(operator.rshift, _shift("lshr"), _by_int)
_register(operator.lshift, _shift("shl"), _by_int)
