"""Weights in the kernels' layout, made once per model file and kept on disk beside it in cache.

Repacking reads every weight and writes the same number of bytes in the layout of
`engine/kernels/layout.py`; tensors that read the same input and share a type are concatenated
(Q, K and V; gate and up), so one product serves them. The result is written as a GGUF file in
the cache directory (LLAMBA_CACHE, default ~/.cache/llamba), keyed by the source file's path,
size and modification time and the layout version. Loads after the first map it: no copy, no
work, and resident memory only for what the forward pass touches. If the cache cannot be
written, the packed weights are kept in memory instead.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter

from .c_heap import release_freed_memory
from .compute_lock import COMPUTE
from .gguf_file import GGUFError, GGUFFile, Tensor
from .kernels import Weight, pack

LAYOUT_VERSION = 1
log = logging.getLogger("llamba")


def cache_dir() -> Path:
    return Path(os.environ.get("LLAMBA_CACHE") or Path.home() / ".cache" / "llamba") / "packed"


def packed_path(source: GGUFFile, groups: dict[str, list[Tensor]]) -> Path:
    stats = [(p.path.resolve(), p.path.stat()) for p in source.parts]  # every part of a split model
    files = "|".join(f"{path}|{st.st_size}|{st.st_mtime_ns}" for path, st in stats)
    key = f"{files}|{LAYOUT_VERSION}|{sorted(groups)}"
    return cache_dir() / f"{source.path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.gguf"


def _pack_group(name: str, parts: list[Tensor]) -> Weight:
    """Concatenate the parts' rows (same type, same width), then repack."""
    raw = parts[0].data if len(parts) == 1 else np.concatenate([p.data for p in parts])
    rows = sum(p.shape[0] for p in parts)
    return pack(name, parts[0].type, (rows, parts[0].shape[1]), raw)


def _write(path: Path, weights: list[Weight]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    writer = GGUFWriter(tmp, "llamba-packed")
    for w in weights:
        writer.add_array(f"llamba.{w.name}", [int(w.type), *w.shape])
        writer.add_array(f"llamba.{w.name}.dtypes", [a.dtype.str for a in w.arrays])
        for i, a in enumerate(w.arrays):
            writer.add_tensor(f"{w.name}.{i}", a.view(np.int8))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, path)  # atomic: a concurrent start never sees half a file


def _read(path: Path, names: list[str]) -> dict[str, Weight]:
    f = GGUFFile(path)
    weights = {}
    for name in names:
        ttype, rows, k = f.metadata[f"llamba.{name}"]
        dtypes = f.metadata[f"llamba.{name}.dtypes"].as_str()
        arrays = tuple(f.tensors[f"{name}.{i}"].data.view(np.dtype(dt)) for i, dt in enumerate(dtypes))
        weights[name] = Weight(name, T(ttype), (rows, k), arrays)
    return weights


def packed_weights(source: GGUFFile, groups: dict[str, list[Tensor]]) -> dict[str, Weight]:
    """name -> Weight for each group of source tensors, from the cache (made if missing)."""
    path = packed_path(source, groups)
    if path.exists():
        try:
            return _read(path, list(groups))
        except (GGUFError, KeyError, ValueError) as e:
            log.warning("ignoring unreadable packed weights %s: %s", path, e)
    weights = []
    for name, parts in groups.items():
        with COMPUTE:  # (repacking runs on every core: in turn with other models' steps, compute_lock.py)
            weights.append(_pack_group(name, parts))
    source.release()  # repacking touched every page of the source; none is needed any more
    try:
        _write(path, weights)
    except OSError as e:
        log.warning("cannot cache packed weights in %s (%s): keeping them in memory", path, e)
        return {w.name: w for w in weights}
    del weights
    release_freed_memory()  # (the repacked arrays, freed: c_heap.py)
    return _read(path, list(groups))
