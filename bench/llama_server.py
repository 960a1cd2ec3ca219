"""llama.cpp's own server (llama-server) and quantizer (llama-quantize), built once from the
llama.cpp source that the installed llama-cpp-python release vendors, for the concurrency and
memory benchmarks and the 1B Q4_K_M file. Cached in ~/.cache/llamba.

    python -m bench.llama_server [--avx2]   # prints the binary's path, building it if needed (~10 min)
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .llama_cpp_avx2 import CMAKE_ARGS
from .synth_model import CACHE, ROOT


def llama_server_binary(avx2_only: bool = False) -> Path:
    """llama-server for this CPU (GGML_NATIVE), or for AVX2 without AVX-512 (as llama_cpp_avx2.py)."""
    return llama_cpp_binary("llama-server", avx2_only)


def llama_cpp_version() -> str:
    """The installed llama-cpp-python's version, else the one constraints.txt pins."""
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        pins = (ROOT / "constraints.txt").read_text()
        return re.search(r"^llama[-_]cpp[-_]python==(\S+)", pins, re.M).group(1)


def llama_cpp_binary(target: str, avx2_only: bool = False) -> Path:
    """A llama.cpp tool (llama-server, llama-quantize), built once from the vendored source; the
    environment's LLAMA_SERVER / LLAMA_QUANTIZE (with _AVX2 for the AVX2 build) or PATH first."""
    variable = target.replace("llama-", "LLAMA_").upper() + ("_AVX2" if avx2_only else "")
    found = os.environ.get(variable) or shutil.which(target)
    if found:
        return Path(found)
    version = llama_cpp_version()
    binary = CACHE / f"{target}-{version}{'-avx2' if avx2_only else ''}"
    if binary.exists():
        return binary
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={version}", "-d", tmp], check=True)
        with tarfile.open(next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))) as tar:
            tar.extractall(tmp, filter="data")
        source = next(Path(tmp).glob("llama_cpp_python-*/vendor/llama.cpp"))
        build = Path(tmp) / "build"
        subprocess.run(["cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                        "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DBUILD_SHARED_LIBS=OFF",
                        "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                        *(CMAKE_ARGS.split() if avx2_only else ["-DGGML_NATIVE=ON"])], check=True)
        subprocess.run(["cmake", "--build", str(build), "--target", target, "-j", str(os.cpu_count())],
                       check=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        shutil.copy2(build / "bin" / target, binary)
    return binary


if __name__ == "__main__":
    print(llama_server_binary(avx2_only="--avx2" in sys.argv))
