"""llama-cpp-python built for AVX2 only (AVX-512 off), so that on an AVX-512 machine the avx2
kernels can be compared with llama.cpp's own AVX2 code: the same release as the installed one,
built from source with CMAKE_ARGS below into a directory of its own (cached in ~/.cache/llamba).

    python -m bench.llama_cpp_avx2   # prints the directory to put on PYTHONPATH (~15 min to build)
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .synth_model import CACHE

CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF "
              "-DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF")


def avx2_build() -> Path:
    version = importlib.metadata.version("llama-cpp-python")
    target = CACHE / f"llama-cpp-python-{version}-avx2"
    if (target / "llama_cpp").exists():
        return target
    partial = target.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--no-deps", "--target", str(partial),
                    f"llama-cpp-python=={version}"], env={**os.environ, "CMAKE_ARGS": CMAKE_ARGS}, check=True)
    partial.rename(target)
    return target


if __name__ == "__main__":
    print(avx2_build())
