"""The byte dot product every quantized kernel is built on: one implementation per instruction-set
path (isa.py), all computing the same exact integer sums.

    dot(w, scale, hi, lo, even, odd, p, bits, tokens) -> I32x16

Each vector w_i of the tuple w (4 or 8: 16 or 32 values) holds, per lane (an output row), 4
unsigned weight bytes, below 2^bits (`bits` is a literal 4, 5, 6 or 8); `tokens` is how many tokens
the kernel multiplies (a literal 1 in the one-token kernels). Element p + i of each
activation row describes the 4 activations w_i multiplies, each a = 256 hi + lo with 16-bit
activations, a = hi with 8-bit ones (activations.py, isa.ACTIVATION_BITS): hi and lo hold their 4
signed bytes hi and lo; even and odd hold a of values 0 and 2, and of values 1 and 3, as two
int16. Per lane the result is sum_i sum_j w_i[j] a_i[j], exact in int32 (at most
32 * 255 * 32639 < 2^31), times that lane of `scale` if it is not None (a K-quant's sub-block
scales, with 8-bit activations: the `vpmaddubsw` paths multiply by them in the `vpmaddwd` that
widens their sums, as llama.cpp does, instead of one more multiply; AVX2 Q4_K over 128 tokens, Zen 3:
76-79 -> 79-82 G products/s, medians of 15 calls, three alternations).

How each path multiplies:
- avx512vnni, avxvnni: `vpdpbusd` (u8 x s8, 4 products summed into an i32 lane), on hi then lo.
  (With 8-bit activations every path skips lo: half the byte products.)
- avx2, avx512bw: `vpmaddubsw` (u8 x s8 pairs into saturating i16) summed in i16 while no sum can
  saturate, then `vpmaddwd` into i32. Bytes (Q8_0) would saturate: they take `vpmaddwd` on 16-bit
  activations instead (`_sixteen_bit`), as does the generic path for every width. So do avx2's
  products over many tokens with 16-bit activations, and its 6-bit weights: there `vpmaddubsw`
  needs two passes (hi, lo) and a widening `vpmaddwd` for the 32 byte products that `vpmaddwd`
  does alone on the weights unpacked to 16 bits — unpacked once per block and kept while the
  tokens go by, so the cost that remains is one multiply and one add per two products (Zen 1, one
  thread, 2048 x 2048, 64 tokens: Q4_0 +12%, Q4_K +20%, Q6_K +34%; one token: Q6_K +11%, but
  Q4_0 -10% and Q4_K -4%, which keep `vpmaddubsw`). avx512bw is unmeasured and keeps it.
- neon: `sdot` (s8 x s8): weights below 128 as they are, bytes as two nibbles.
A 16-lane vector is cut into the lanes one instruction covers (16 on AVX-512, 8 on AVX2, 4 on
NEON), each piece multiplied alone and the pieces joined: LLVM keeps pieces in separate registers,
so the cutting costs nothing.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .isa import ACTIVATION_BITS, PATH
from .simd import I32x16

_I8, _I16, _I32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)
LANES = {"avx512vnni": 16, "avx512bw": 16, "avxvnni": 8, "avx2": 8, "neon": 4, "generic": 16}


def _vec(lane, n):
    return ir.VectorType(lane, n)


def _const(lane, n, value):
    return ir.Constant(_vec(lane, n), [value] * n)


def _splat(builder, value, n):
    """An i32 scalar in each of n lanes."""
    vec = builder.insert_element(ir.Constant(_vec(_I32, n), ir.Undefined), value, _I32(0))
    return builder.shuffle_vector(vec, vec, ir.Constant(_vec(_I32, n), [0] * n))


def _pieces(builder, vec, lanes):
    """A <16 x i32> as 16 / lanes vectors of `lanes` lanes (itself alone for 16)."""
    if lanes == 16:
        return [vec]
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


def _sum(builder, values):
    """Added as a tree, so that the additions do not wait on each other in one long chain."""
    while len(values) > 1:
        values = [builder.add(a, b) for a, b in zip(values[::2], values[1::2])] + values[len(values) // 2 * 2:]
    return values[0]


def _shl(builder, x, n):
    return builder.shl(x, _const(_I32, x.type.count, n))


# --- an accumulating dot instruction: vpdpbusd (x86 VNNI), sdot (aarch64) ---

def _vpdpbusd(builder, acc, w, a):
    return _call(builder, f"llvm.x86.avx512.vpdpbusd.{32 * acc.type.count}", acc.type, [acc, w, a])


def _sdot(builder, acc, w, a):
    return _call(builder, "llvm.aarch64.neon.sdot.v4i32.v16i8", acc.type,
                 [acc, _as(builder, w, _I8), _as(builder, a, _I8)])


def _accumulating(builder, w, hi, lo, bits, dot):
    """sum_i w_i . (256 hi_i + lo_i), or w_i . hi_i when lo is None (8-bit activations),
    dot(acc, weights, activations) adding 4-byte dots to acc;
    w[i][k] is vector i's piece k, and the result a list over pieces. Each piece sums in chains of
    4 dots (independent chains overlap their latencies), vector by vector across the pieces."""
    pieces, n = len(w[0]), w[0][0].type.count
    if bits == 8 and dot is _sdot:  # signed bytes only: weights as 16 high + low nibble
        mask, four = _const(_I32, n, 0x0F0F0F0F), _const(_I32, n, 4)
        high = [[builder.and_(builder.lshr(p, four), mask) for p in wi] for wi in w]
        low = [[builder.and_(p, mask) for p in wi] for wi in w]
        parts = [_accumulating(builder, ws, hi, lo, 4, dot) for ws in (high, low)]
        return [builder.add(_shl(builder, a, 4), b) for a, b in zip(*parts)]

    def sums(acts):
        chains = {}
        for i in range(len(w)):
            for k in range(pieces):
                acc = chains.get((i // 4, k), _const(_I32, n, 0))
                chains[i // 4, k] = dot(builder, acc, w[i][k], acts[i])
        return [_sum(builder, [chains[c, k] for c in range((len(w) + 3) // 4)]) for k in range(pieces)]
    if lo is None:
        return sums(hi)
    return [builder.add(_shl(builder, h, 8), low) for h, low in zip(sums(hi), sums(lo))]


# --- vpmaddubsw and vpmaddwd (x86 without VNNI), and 16-bit products for any CPU ---

def _madd_x86(builder, x, y):
    """vpmaddwd: per i32 lane, the two i16 products of x and y summed."""
    x16, y16 = _as(builder, x, _I16), _as(builder, y, _I16)
    n = x16.type.count // 2
    name = "llvm.x86.avx512.pmaddw.d.512" if n == 16 else "llvm.x86.avx2.pmadd.wd"
    return _call(builder, name, _vec(_I32, n), [x16, y16])


def _madd_generic(builder, x, y):
    """vpmaddwd's sums in plain IR (LLVM turns the pattern into pmaddwd on x86, smull/smlal on arm)."""
    n = x.type.count
    wide, x16, y16 = _vec(_I32, n), _as(builder, x, _I16), _as(builder, y, _I16)
    products = []
    for first in (0, 1):
        pick = ir.Constant(_vec(_I32, n), list(range(first, 2 * n, 2)))
        products.append(builder.mul(builder.sext(builder.shuffle_vector(x16, x16, pick), wide),
                                    builder.sext(builder.shuffle_vector(y16, y16, pick), wide)))
    return builder.add(*products)


def _sixteen_bit(builder, w, even, odd, madd):
    """sum_i w_i . a_i through 16-bit products: bytes 0 and 2 of each weight lane times `even`,
    bytes 1 and 3 times `odd`. Exact for any u8 weights: at most 32 * 255 * 32639 < 2^31. w[i][k]
    is vector i's piece k; the result a list over pieces, summed vector by vector."""
    pieces, n = len(w[0]), w[0][0].type.count
    mask, eight = _const(_I32, n, 0x00FF00FF), _const(_I32, n, 8)
    totals = [[] for _ in range(pieces)]
    for wi, e, o in zip(w, even, odd):
        for k in range(pieces):
            totals[k].append(builder.add(madd(builder, builder.and_(wi[k], mask), e),
                                         madd(builder, builder.and_(builder.lshr(wi[k], eight), mask), o)))
    return [_sum(builder, t) for t in totals]


def _scale_pairs(builder, scale, weight):
    """vpmaddwd's second operand that multiplies each i32 lane's pair sum by weight times that
    lane of scale, s: the i16 pair (s * weight, s * weight)."""
    n = scale.type.count
    pair = builder.or_(builder.and_(scale, _const(_I32, n, 0xFFFF)), _shl(builder, scale, 16))
    return builder.mul(_as(builder, pair, _I16), _const(_I16, 2 * n, weight))


def _maddubs(builder, w, hi, lo, bits, scale):
    """Weights below 2^6: vpmaddubsw summed in i16 while no sum can saturate (a group's
    2 * group products of at most (2^bits - 1) * 127 stay below 2^15), then vpmaddwd by 256 (hi)
    or 1 (lo, or hi alone when lo is None) into i32, times the lanes of scale[k] if scale is not
    None (vpmaddwd multiplies by them for free: scale * 2^15 < 2^31 with 8-bit activations, the only
    ones with a scale). w[i][k]: vector i's piece k. Vector by vector, each piece in turn: each
    weight and activation is used as soon as it is there, so that AVX2's 16 registers hold what
    is live."""
    pieces, n = len(w[0]), w[0][0].type.count
    name = "llvm.x86.avx512.pmaddubs.w.512" if n == 16 else "llvm.x86.avx2.pmadd.ub.sw"
    group = {4: 8, 5: 4, 6: 2}[bits]
    halves = ((hi, 256), (lo, 1)) if lo is not None else ((hi, 1),)
    weights = [[_const(_I16, 2 * n, weight) if scale is None else _scale_pairs(builder, scale[k], weight)
                for _, weight in halves] for k in range(pieces)]
    terms = [[] for _ in range(pieces)]
    for start in range(0, len(w), group):
        sums = {}
        for i in range(start, min(start + group, len(w))):
            for k in range(pieces):
                for half, (acts, _) in enumerate(halves):
                    p = _call(builder, name, _vec(_I16, 2 * n), [_as(builder, w[i][k], _I8), _as(builder, acts[i], _I8)])
                    sums[k, half] = builder.add(sums[k, half], p) if (k, half) in sums else p
        for k in range(pieces):
            terms[k] += [_madd_x86(builder, sums[k, half], weights[k][half]) for half in range(len(halves))]
    return [_sum(builder, t) for t in terms]


def _byte_products(path: str, bits: int, activation_bits: int, one_token: bool) -> bool:
    """Whether the dot multiplies bytes with `vpmaddubsw` (`_maddubs`, avx2 and avx512bw only)
    rather than 16-bit values."""
    if path not in ("avx2", "avx512bw"):
        return False
    if path == "avx512bw" or activation_bits == 8:
        return bits <= 6
    return bits <= 5 and one_token


def dot_ir(builder, path, w, hi, lo, even, odd, bits, activation_bits=16, one_token=False, scale=None):
    """The IR of `dot` for `path`: w four or eight <16 x i32>; hi, lo, even and odd as many i32
    scalars each (lo unused with 8-bit activations); one_token: for a kernel of one token; scale
    (None, or a <16 x i32> with 8-bit activations): each lane's sum times that lane of it."""
    lanes = LANES[path]
    w = [_pieces(builder, wi, lanes) for wi in w]
    hi, lo, even, odd = ([_splat(builder, x, lanes) for x in acts] for acts in (hi, lo, even, odd))
    lo = lo if activation_bits == 16 else None
    if _byte_products(path, bits, activation_bits, one_token):
        scales = None if scale is None else _pieces(builder, scale, lanes)
        return _join(builder, _maddubs(builder, w, hi, lo, bits, scales))
    if path in ("avx512vnni", "avxvnni"):
        pieces = _accumulating(builder, w, hi, lo, bits, _vpdpbusd)
    elif path == "neon":
        pieces = _accumulating(builder, w, hi, lo, bits, _sdot)
    else:
        pieces = _sixteen_bit(builder, w, even, odd, _madd_x86 if path != "generic" else _madd_generic)
    total = _join(builder, pieces)
    return total if scale is None else builder.mul(total, scale)


@intrinsic(prefer_literal=True)
def dot(typingctx, w, scale, hi, lo, even, odd, p, bits, tokens):
    """sum over the vectors of w (a tuple of 4 or 8) of their bytes times the activations from
    int32 index p of the rows hi, lo, even and odd (one token's, see activations.py), times scale
    per lane (an I32x16, or None), in a kernel of `tokens` tokens."""
    if not isinstance(bits, types.IntegerLiteral) or bits.literal_value not in (4, 5, 6, 8):
        raise TypeError(f"dot: bits must be a literal 4, 5, 6 or 8, not {bits}")
    if not (isinstance(w, types.UniTuple) and w.dtype == I32x16 and w.count in (4, 8)):
        raise TypeError(f"dot: weights must be a tuple of 4 or 8 I32x16, not {w}")
    if not (scale == I32x16 or isinstance(scale, types.NoneType)):
        raise TypeError(f"dot: scale must be an I32x16 or None, not {scale}")

    def codegen(context, builder, sig, args):
        vectors = [builder.extract_value(args[0], i) for i in range(sig.args[0].count)]
        index = context.cast(builder, args[6], sig.args[6], types.intp)
        acts = []
        for array_type, array in zip(sig.args[2:6], args[2:6]):
            data = cgutils.create_struct_proxy(array_type)(context, builder, value=array).data
            acts.append([builder.load(builder.gep(data, [builder.add(index, ir.Constant(index.type, i))]))
                         for i in range(len(vectors))])
        lane_scale = None if isinstance(sig.args[1], types.NoneType) else args[1]
        return dot_ir(builder, PATH, vectors, *acts, bits.literal_value, ACTIVATION_BITS, one_token, lane_scale)
    one_token = isinstance(tokens, types.IntegerLiteral) and tokens.literal_value == 1
    return I32x16(w, scale, hi, lo, even, odd, p, bits, tokens), codegen
