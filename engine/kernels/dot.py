"""The byte dot product every quantized kernel is built on: one implementation per instruction-set
path (isa.py), all computing the same exact integer sums.

    dot16(v0, v1, v2, v3, hi0, hi1, hi2, hi3, lo0, lo1, lo2, lo3, bits) -> I32x16

Each v_i holds, per lane (an output row), 4 unsigned weight bytes; hi_i and lo_i are int32 scalars
holding the 4 signed high and low bytes of the activations those weights multiply (an activation
is 256 hi + lo, see activations.py). Per lane the result is sum_i sum_j v_i[j] (256 hi_i[j] + lo_i[j]).
`bits` (a literal) bounds the weights, below 2^bits (4, 5, 6 or 8): the 16-bit partial sums of
`vpmaddubsw` must not saturate, and signed-byte products (`sdot`) need weights below 128.

The paths differ in how many lanes one instruction covers (16 on AVX-512, 8 on AVX2, 4 on NEON):
a 16-lane vector is cut into that many pieces, each multiplied alone, and joined again; LLVM keeps
the pieces in separate registers, so the cutting costs nothing.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .isa import PATH
from .simd import I32x16

_I8, _I16, _I32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)


def _vec(lane, n):
    return ir.VectorType(lane, n)


def _splat(builder, value, n):
    """An i32 scalar in each of n lanes."""
    vec = builder.insert_element(ir.Constant(_vec(_I32, n), ir.Undefined), value, _I32(0))
    return builder.shuffle_vector(vec, vec, ir.Constant(_vec(_I32, n), [0] * n))


def _const(lane, n, value):
    return ir.Constant(_vec(lane, n), [value] * n)


def _pieces(builder, vec, lanes):
    """A <16 x i32> as 16 / lanes vectors of `lanes` lanes."""
    return [builder.shuffle_vector(vec, vec, ir.Constant(_vec(_I32, lanes), list(range(k, k + lanes))))
            for k in range(0, 16, lanes)]


def _join(builder, pieces):
    while len(pieces) > 1:
        n = pieces[0].type.count
        pieces = [builder.shuffle_vector(a, b, ir.Constant(_vec(_I32, 2 * n), list(range(2 * n))))
                  for a, b in zip(pieces[::2], pieces[1::2])]
    return pieces[0]


def _call(builder, name, ret, args):
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, [a.type for a in args]), name)
    return builder.call(fn, args)


def _as(builder, vec, lane):
    """Reinterpret a vector's bits as lanes of another width."""
    bits = vec.type.count * vec.type.element.width
    return builder.bitcast(vec, _vec(lane, bits // lane.width))


def _nibbles(builder, w):
    """Weights of 8 bits as their high and low nibbles (each then below 2^4)."""
    mask = _const(_I32, w.type.count, 0x0F0F0F0F)
    return builder.and_(builder.lshr(w, _const(_I32, w.type.count, 4)), mask), builder.and_(w, mask)


def _shl(builder, x, n):
    return builder.shl(x, _const(_I32, x.type.count, n))


# --- paths with an accumulating dot instruction: vpdpbusd (x86 VNNI), sdot (aarch64) ---

def _accumulating(builder, w, hi, lo, bits, dot):
    """sum_i w_i . (256 hi_i + lo_i) with dot(acc, weights, activations) = acc + 4-byte dots."""
    def sums(weights, acts):
        acc = _const(_I32, weights[0].type.count, 0)
        for wi, ai in zip(weights, acts):
            acc = dot(builder, acc, wi, ai)
        return acc
    if bits == 8 and dot is _sdot:  # sdot multiplies signed bytes: split weights into nibbles
        split = [_nibbles(builder, wi) for wi in w]
        w_high, w_low = [s[0] for s in split], [s[1] for s in split]
        scaled_hi = builder.add(_shl(builder, sums(w_high, hi), 4), sums(w_low, hi))
        scaled_lo = builder.add(_shl(builder, sums(w_high, lo), 4), sums(w_low, lo))
        return builder.add(_shl(builder, scaled_hi, 8), scaled_lo)
    return builder.add(_shl(builder, sums(w, hi), 8), sums(w, lo))


def _vpdpbusd(builder, acc, w, a):
    n = acc.type.count
    return _call(builder, f"llvm.x86.avx512.vpdpbusd.{32 * n}", acc.type, [acc, w, a])


def _sdot(builder, acc, w, a):
    return _call(builder, "llvm.aarch64.neon.sdot.v4i32.v16i8", acc.type,
                 [acc, _as(builder, w, _I8), _as(builder, a, _I8)])


# --- paths with vpmaddubsw (u8 x s8 pairs to saturating i16) and vpmaddwd (i16 pairs to i32) ---

def _maddubs_path(builder, w, hi, lo, bits):
    n = w[0].type.count
    width = 32 * n
    maddubs_name = "llvm.x86.avx512.pmaddubs.w.512" if width == 512 else "llvm.x86.avx2.pmadd.ub.sw"
    madd_name = "llvm.x86.avx512.pmaddw.d.512" if width == 512 else "llvm.x86.avx2.pmadd.wd"

    def maddubs_sum(weights, acts):
        """Sum of u8 x s8 pair products in i16: at most 2 * len(weights) products per lane."""
        total = None
        for wi, ai in zip(weights, acts):
            p = _call(builder, maddubs_name, _vec(_I16, 2 * n), [_as(builder, wi, _I8), _as(builder, ai, _I8)])
            total = p if total is None else builder.add(total, p)
        return total

    def madd(x, factor):
        return _call(builder, madd_name, _vec(_I32, n), [x, _const(_I16, 2 * n, factor)])

    if bits == 8:  # u8 x s8 pairs can reach 2 * 255 * 127, past i16: multiply nibbles instead
        split = [_nibbles(builder, wi) for wi in w]
        w_high, w_low = [s[0] for s in split], [s[1] for s in split]
        terms = [madd(maddubs_sum(w_high, hi), 4096), madd(maddubs_sum(w_low, hi), 256),
                 madd(maddubs_sum(w_high, lo), 16), madd(maddubs_sum(w_low, lo), 1)]
    else:
        # 2 * group products of (2^bits - 1) * 127 each must stay below 2^15
        group = 4 if bits <= 5 else 2
        terms = []
        for k in range(0, 4, group):
            terms += [madd(maddubs_sum(w[k:k + group], hi[k:k + group]), 256),
                      madd(maddubs_sum(w[k:k + group], lo[k:k + group]), 1)]
    total = terms[0]
    for t in terms[1:]:
        total = builder.add(total, t)
    return total


# --- the generic path: 16-bit activations, products summed in pairs (pmaddwd's pattern) ---

def _generic_path(builder, w, hi, lo, bits):
    """Each activation 256 hi + lo is exact in 16 bits; weight x activation pairs summed in 32."""
    wide = _vec(_I32, 32)
    even = ir.Constant(_vec(_I32, 32), list(range(0, 64, 2)))
    odd = ir.Constant(_vec(_I32, 32), list(range(1, 64, 2)))
    total = None
    for wi, high, low in zip(w, hi, lo):
        a16 = builder.add(builder.shl(builder.sext(_as(builder, high, _I8), _vec(_I16, 64)), _const(_I16, 64, 8)),
                          builder.sext(_as(builder, low, _I8), _vec(_I16, 64)))
        w16 = builder.zext(_as(builder, wi, _I8), _vec(_I16, 64))
        pairs = [builder.mul(builder.sext(builder.shuffle_vector(w16, w16, sel), wide),
                             builder.sext(builder.shuffle_vector(a16, a16, sel), wide)) for sel in (even, odd)]
        s = builder.add(*pairs)
        total = s if total is None else builder.add(total, s)
    lane_even = ir.Constant(_vec(_I32, 16), list(range(0, 32, 2)))
    lane_odd = ir.Constant(_vec(_I32, 16), list(range(1, 32, 2)))
    return builder.add(builder.shuffle_vector(total, total, lane_even), builder.shuffle_vector(total, total, lane_odd))


LANES = {"avx512vnni": 16, "avx512bw": 16, "avxvnni": 8, "avx2": 8, "neon": 4, "generic": 16}


def dot16_ir(builder, path, w, hi, lo, bits):
    """The IR of dot16 for `path`: w four <16 x i32>, hi and lo four i32 scalars each."""
    lanes = LANES[path]
    w_pieces = [_pieces(builder, wi, lanes) if lanes < 16 else [wi] for wi in w]
    his, los = [_splat(builder, x, lanes) for x in hi], [_splat(builder, x, lanes) for x in lo]
    out = []
    for k in range(16 // lanes):
        wk = [p[k] for p in w_pieces]
        if path in ("avx512vnni", "avxvnni"):
            out.append(_accumulating(builder, wk, his, los, bits, _vpdpbusd))
        elif path == "neon":
            out.append(_accumulating(builder, wk, his, los, bits, _sdot))
        elif path in ("avx512bw", "avx2"):
            out.append(_maddubs_path(builder, wk, his, los, bits))
        else:
            out.append(_generic_path(builder, wk, his, los, bits))
    return _join(builder, out)


@intrinsic(prefer_literal=True)
def dot16(typingctx, v0, v1, v2, v3, hi0, hi1, hi2, hi3, lo0, lo1, lo2, lo3, bits):
    if not isinstance(bits, types.IntegerLiteral) or bits.literal_value not in (4, 5, 6, 8):
        raise TypeError(f"dot16: bits must be a literal 4, 5, 6 or 8, not {bits}")

    def codegen(context, builder, sig, args):
        scalars = [context.cast(builder, a, t, types.int32) for a, t in zip(args[4:12], sig.args[4:12])]
        return dot16_ir(builder, PATH, list(args[:4]), scalars[:4], scalars[4:], bits.literal_value)
    return I32x16(v0, v1, v2, v3, hi0, hi1, hi2, hi3, lo0, lo1, lo2, lo3, bits), codegen
