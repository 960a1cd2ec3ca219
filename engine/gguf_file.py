"""A lean GGUF reader over a memory map.

`gguf.GGUFReader` builds a Python object for every element of every metadata array; on a Llama 3
vocabulary (128256 tokens, 280147 merges) that costs ~9 s and ~640 MB (../shared/notes). This
reader keeps the `gguf` package's constants and type sizes but parses only the header, keeps
string arrays as offsets into the map, and hands out tensors as zero-copy numpy views.

Layout (little endian): magic "GGUF", version u32, n_tensors u64, n_kv u64, then n_kv
(key, type, value) entries, then n_tensors (name, n_dims, dims[ggml order], type, offset) infos,
then the tensor data, aligned to `general.alignment` (default 32).

A model split by llama.cpp's gguf-split (name-00001-of-00003.gguf, ...) is opened by its first
part: every part is a GGUF file of its own (`split.no`, `split.count`), the first one holding the
metadata, and their tensors are joined into one table.
"""
from __future__ import annotations

import hashlib
import math
import mmap
import os
import re
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numba import njit
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from .kernels import numba_cache  # noqa: F401 (its cache locator, before the njit below)

GGUF_MAGIC = b"GGUF"
SPLIT_NAME = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")  # gguf-split's part names

GGML_MAX_DIMS = 4
_SCALAR_FORMATS = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.FLOAT64: "<d",
    GGUFValueType.BOOL: "<?",
}
_NUMPY_TYPES = {
    GGUFValueType.UINT8: np.uint8, GGUFValueType.INT8: np.int8,
    GGUFValueType.UINT16: np.uint16, GGUFValueType.INT16: np.int16,
    GGUFValueType.UINT32: np.uint32, GGUFValueType.INT32: np.int32,
    GGUFValueType.UINT64: np.uint64, GGUFValueType.INT64: np.int64,
    GGUFValueType.FLOAT32: np.float32, GGUFValueType.FLOAT64: np.float64,
    GGUFValueType.BOOL: np.bool_,
}


class GGUFError(ValueError):
    """A GGUF file that cannot be used; the message names the file and what is wrong."""


class StringArray:
    """A metadata array of strings left in the memory map; decoded only when asked."""

    def __init__(self, buf: memoryview, offsets: np.ndarray, lengths: np.ndarray):
        self._buf, self.offsets, self.lengths = buf, offsets, lengths

    def __len__(self) -> int:
        return len(self.offsets)

    def as_bytes(self) -> list[bytes]:
        buf = self._buf
        return [bytes(buf[o:o + n]) for o, n in zip(self.offsets.tolist(), self.lengths.tolist())]

    def as_str(self) -> list[str]:
        return [b.decode("utf-8", errors="replace") for b in self.as_bytes()]

    def digest(self) -> str:
        """A hash of the strings (of their bytes in the file, one run of length-prefixed strings;
        hashlib lets other threads run while it reads them)."""
        if not len(self):
            return hashlib.sha256().hexdigest()
        start, end = int(self.offsets[0]) - 8, int(self.offsets[-1] + self.lengths[-1])
        return hashlib.sha256(self._buf[start:end]).hexdigest()


@dataclass(frozen=True)
class Tensor:
    """One tensor: `data` is a view into the map, shape (rows, bytes per row) for block types."""
    name: str
    type: GGMLQuantizationType
    shape: tuple[int, ...]  # numpy order: (rows, cols) for a matrix
    data: np.ndarray
    offset: int = 0         # of the data in its file
    part: int = 0           # which file of a split model holds it


def split_paths(path: Path) -> list[Path]:
    """The files of the model whose first part is `path`: [path] unless it is named as the first
    part of a split model, name-00001-of-0000N.gguf."""
    m = SPLIT_NAME.search(path.name)
    if not m or int(m.group(1)) != 1:
        return [path]
    prefix, count = path.name[:m.start()], int(m.group(2))
    return [path.with_name(f"{prefix}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]


class GGUFFile:
    """Header, metadata and tensors of one GGUF file, all views into one read-only memory map."""

    def __init__(self, path: str | Path, *, join_split: bool = True):
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise GGUFError(f"{self.path}: cannot open file: {e}") from None
        try:
            self._mmap = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as e:  # ValueError: empty file cannot be mapped
            os.close(self._fd)
            raise GGUFError(f"{self.path}: cannot map file: {e}") from None
        self._buf = memoryview(self._mmap)
        self._pos = 0
        self.metadata: dict[str, object] = {}
        self.tensors: dict[str, Tensor] = {}
        self._parse()
        self.parts = [self]  # the files of a split model, first to last
        if join_split:
            self._join_split()

    @property
    def size(self) -> int:
        """Bytes on disk, all parts."""
        return sum(len(p._buf) for p in self.parts)

    # --- low-level cursor -------------------------------------------------------------------
    def read_rows(self, tensor: Tensor, rows) -> np.ndarray:
        """Some rows of a tensor, read from the file rather than through the map: touching a
        few rows of a large table through the map brings whole large folios (megabytes per
        row) into resident memory."""
        stride, fd = tensor.data.strides[0], self.parts[tensor.part]._fd
        data = b"".join(os.pread(fd, stride, tensor.offset + int(r) * stride) for r in rows)
        return np.frombuffer(data, tensor.data.dtype).reshape(len(rows), *tensor.data.shape[1:])

    def release(self) -> None:
        """Drop this process's resident pages of the map (they stay valid: touching one again
        reads it back from the page cache). Used after repacking has read every weight once."""
        for part in self.parts:
            part._mmap.madvise(mmap.MADV_DONTNEED)

    def _join_split(self) -> None:
        count, number = self.metadata.get("split.count", 0), self.metadata.get("split.no", 0)
        if count <= 1:
            return
        if number != 0:
            raise self._fail(f"part {number + 1} of a model split in {count}: open its first part")
        paths = split_paths(self.path)
        if len(paths) != count:
            raise self._fail(f"the first of {count} split parts, but not named as one "
                             f"(name-00001-of-{count:05d}.gguf): its other parts cannot be found")
        for i, path in enumerate(paths[1:], start=1):
            if not path.exists():
                raise self._fail(f"split part {i + 1} of {count} is missing: {path.name}")
            part = GGUFFile(path, join_split=False)
            if (part.metadata.get("split.no"), part.metadata.get("split.count")) != (i, count):
                raise part._fail(f"is not split part {i + 1} of {count} (its split.no, split.count: "
                                 f"{part.metadata.get('split.no')}, {part.metadata.get('split.count')})")
            for name, tensor in part.tensors.items():
                if name in self.tensors:
                    raise part._fail(f"tensor {name!r} is also in an earlier split part")
                self.tensors[name] = replace(tensor, part=i)
            self.parts.append(part)
        expected = self.metadata.get("split.tensors.count", len(self.tensors))
        if len(self.tensors) != expected:
            raise self._fail(f"split parts hold {len(self.tensors)} tensors, split.tensors.count says {expected}")

    def _fail(self, what: str) -> GGUFError:
        return GGUFError(f"{self.path}: {what}")

    def _take(self, n: int, what: str) -> memoryview:
        end = self._pos + n
        if n < 0 or end > len(self._buf):
            raise self._fail(f"truncated: {what} at offset {self._pos} needs {n} bytes, "
                             f"file has {len(self._buf)}")
        view = self._buf[self._pos:end]
        self._pos = end
        return view

    def _scalar(self, vtype: GGUFValueType, what: str):
        fmt = _SCALAR_FORMATS[vtype]
        return struct.unpack(fmt, self._take(struct.calcsize(fmt), what))[0]

    def _string(self, what: str) -> str:
        n = self._scalar(GGUFValueType.UINT64, what)
        return bytes(self._take(n, what)).decode("utf-8", errors="replace")

    def _value_type(self, what: str) -> GGUFValueType:
        raw = self._scalar(GGUFValueType.UINT32, what)
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise self._fail(f"unknown value type {raw} for {what} at offset {self._pos - 4}") from None

    def _value(self, vtype: GGUFValueType, what: str):
        if vtype == GGUFValueType.STRING:
            return self._string(what)
        if vtype != GGUFValueType.ARRAY:
            return self._scalar(vtype, what)
        etype = self._value_type(what)
        count = self._scalar(GGUFValueType.UINT64, what)
        if etype == GGUFValueType.STRING:
            return self._string_array(count, what)
        if etype == GGUFValueType.ARRAY:
            return [self._value(self._value_type(what), what) for _ in range(count)]
        dtype = np.dtype(_NUMPY_TYPES[etype])
        return np.frombuffer(self._take(count * dtype.itemsize, what), dtype=dtype)

    def _string_array(self, count: int, what: str) -> StringArray:
        # One pass over the length prefixes; the strings stay in the map.
        if count * 8 > len(self._buf) - self._pos:  # (each string has at least its length prefix)
            raise self._fail(f"truncated: {what} claims {count} strings at offset {self._pos}, more than "
                             f"the file's {len(self._buf)} bytes can hold")
        offsets = np.empty(count, np.int64)
        lengths = np.empty(count, np.int64)
        pos, size = _scan_strings(np.frombuffer(self._mmap, np.uint8), self._pos, offsets, lengths), len(self._buf)
        if pos > size:
            raise self._fail(f"truncated: {what} (array of {count} strings starting at offset "
                             f"{self._pos}) runs past the end of the file ({size} bytes)")
        self._pos = pos
        return StringArray(self._buf, offsets, lengths)

    # --- structure ---------------------------------------------------------------------------
    def _parse(self) -> None:
        magic = bytes(self._take(4, "magic")) if len(self._buf) >= 4 else bytes(self._buf)
        if magic != GGUF_MAGIC:
            raise self._fail(f"not a GGUF file: bad magic {magic!r} at offset 0 (expected b'GGUF')")
        version = self._scalar(GGUFValueType.UINT32, "version")
        if version not in (2, 3):
            raise self._fail(f"unsupported GGUF version {version} (expected 2 or 3)")
        n_tensors = self._scalar(GGUFValueType.UINT64, "tensor count")
        n_kv = self._scalar(GGUFValueType.UINT64, "metadata count")
        for i in range(n_kv):
            key = self._string(f"metadata key #{i}")
            self.metadata[key] = self._value(self._value_type(f"metadata {key!r}"), f"metadata {key!r}")

        infos = []
        for i in range(n_tensors):
            name = self._string(f"tensor info #{i}")
            n_dims = self._scalar(GGUFValueType.UINT32, f"tensor {name!r} dims")
            if not 1 <= n_dims <= GGML_MAX_DIMS:
                raise self._fail(f"tensor {name!r} has {n_dims} dimensions (1 to {GGML_MAX_DIMS} expected)")
            dims = [self._scalar(GGUFValueType.UINT64, f"tensor {name!r} dims") for _ in range(n_dims)]
            raw_type = self._scalar(GGUFValueType.UINT32, f"tensor {name!r} type")
            offset = self._scalar(GGUFValueType.UINT64, f"tensor {name!r} offset")
            try:
                ttype = GGMLQuantizationType(raw_type)
            except ValueError:
                raise self._fail(f"tensor {name!r} has unknown type {raw_type}") from None
            infos.append((name, dims, ttype, offset))

        alignment = self.metadata.get("general.alignment", 32)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise self._fail(f"general.alignment must be a power of two, got {alignment!r}")
        data_start = -(-self._pos // alignment) * alignment
        for name, dims, ttype, offset in infos:
            self.tensors[name] = self._tensor(name, dims, ttype, data_start + offset)

    def _tensor(self, name: str, dims: list[int], ttype: GGMLQuantizationType, start: int) -> Tensor:
        block_size, type_size = GGML_QUANT_SIZES[ttype]
        shape = tuple(reversed(dims))  # GGML lists the fastest-moving dimension first
        if shape[-1] % block_size:
            raise self._fail(f"tensor {name!r}: row length {shape[-1]} is not a multiple of "
                             f"the {ttype.name} block size {block_size}")
        row_bytes = shape[-1] // block_size * type_size
        n_rows = math.prod(shape[:-1])  # Python's integers: no overflow from absurd dimensions
        end = start + n_rows * row_bytes
        if end > len(self._buf):
            raise self._fail(f"tensor {name!r} data [{start}, {end}) runs past the end of the "
                             f"file ({len(self._buf)} bytes): file truncated or corrupt")
        raw = np.frombuffer(self._mmap, dtype=np.uint8, count=end - start, offset=start)
        if block_size == 1:  # plain element types: a typed view in numpy order
            data = raw.view(_ELEMENT_DTYPES.get(ttype, np.uint8)).reshape(shape)
        else:
            data = raw.reshape(*shape[:-1], row_bytes)
        return Tensor(name, ttype, shape, data, start)


@njit(cache=True, nogil=True)
def _scan_strings(buf, pos, offsets, lengths):
    """The offsets and lengths of len(offsets) length-prefixed strings (u64 little endian, then
    the bytes) from buf[pos:]; returns the position after the last, or len(buf) + 1 if they run
    past the end. Compiled, and without the GIL: a Llama 3 vocabulary and its merges are 400k
    strings, 80 ms a pass in Python, during which another model's steps wait for the interpreter."""
    size = len(buf)
    for i in range(len(offsets)):
        if pos + 8 > size:
            return size + 1
        n = 0
        for b in range(8):
            n |= np.int64(buf[pos + b]) << (8 * b)
        if n < 0 or n > size - pos - 8:  # (n < 0: beyond 2^63)
            return size + 1
        offsets[i], lengths[i] = pos + 8, n
        pos += 8 + n
    return pos


# BF16 has no numpy dtype: it stays as raw uint16 and the kernels widen it.
_ELEMENT_DTYPES = {
    GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16,
    GGMLQuantizationType.BF16: np.uint16, GGMLQuantizationType.F64: np.float64,
    GGMLQuantizationType.I8: np.int8, GGMLQuantizationType.I16: np.int16,
    GGMLQuantizationType.I32: np.int32, GGMLQuantizationType.I64: np.int64,
}
