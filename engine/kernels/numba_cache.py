"""numba's on-disk cache, keyed by every engine source file with numba code in it at once.

numba checks only the source file of the function it compiled, but the kernels inline helpers
from dot.py, simd.py and layout.py: after an edit there, a cached kernel would keep the old code.
Functions defined in the engine get a cache locator whose stamp hashes those files, and a folder
per activation width the kernels are compiled for (isa.py), which no file or CPU feature shows:
numba keeps one stamp per source file's index, so a process of the other width would replace the
index (and every kernel would compile again in the next process of this one)."""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from numba.core.caching import CacheImpl, InTreeCacheLocator, UserProvidedCacheLocator

from .isa import ACTIVATION_BITS

ENGINE = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def engine_stamp() -> str:
    """A hash of every engine file that mentions numba: the only ones whose code a kernel can
    hold (an edit to the chat planner or the sampler compiles nothing again)."""
    sources = (f.read_bytes() for f in sorted(ENGINE.rglob("*.py")))
    return hashlib.sha256(b"".join(source for source in sources if b"numba" in source)).hexdigest()


class _PackageStamp:
    @classmethod
    def from_function(cls, py_func, py_file):
        if ENGINE not in Path(py_file).resolve().parents:
            return None
        return super().from_function(py_func, py_file)

    def get_source_stamp(self):
        return engine_stamp()

    def get_cache_path(self):
        return os.path.join(super().get_cache_path(), f"a{ACTIVATION_BITS}")


class KernelCacheDirLocator(_PackageStamp, UserProvidedCacheLocator):
    """NUMBA_CACHE_DIR, when set."""

    @classmethod
    def get_suitable_cache_subpath(cls, py_file):
        """A folder named by the engine's stamp and the file's place in the package, not by where
        the package is: the same sources installed elsewhere (a wheel in a fresh virtual
        environment, a release installed again) find their kernels compiled already."""
        folder = Path(py_file).resolve().parent.relative_to(ENGINE.parent)
        return "-".join(("llamba", engine_stamp()[:16], *folder.parts))


class KernelInTreeLocator(_PackageStamp, InTreeCacheLocator):
    """__pycache__ beside the sources, as numba's default."""


CacheImpl._locator_classes[:0] = [KernelCacheDirLocator, KernelInTreeLocator]
