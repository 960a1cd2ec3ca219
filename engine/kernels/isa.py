"""Which instruction set the kernels are built for: one path per process, chosen from the CPU
features LLVM compiles for, before numba compiles anything.

Paths, best first, and the byte dot product each builds on (see dot.py):
- avx512vnni: `vpdpbusd` on 512 bits (AMD Zen 4+, Intel Ice Lake / Sapphire Rapids servers).
- avx512bw: `vpmaddubsw` + `vpmaddwd` on 512 bits (Intel Skylake-X / Cascade Lake class).
- avxvnni: `vpdpbusd` on 256 bits (Intel Alder Lake and later client cores).
- avx2: `vpmaddubsw` + `vpmaddwd` on 256 bits (AMD Zen 1-3, Intel Haswell and later).
- neon: `sdot` on 128 bits (aarch64 with the dot-product extension: Apple M1+, Graviton 2+).
- generic: plain vector IR (16-bit products, pairwise sums) that LLVM lowers for any CPU.
Every path computes the same exact integer sums over the same activations, so all give the same
results bit for bit.

Activations (activations.py) are rounded to 8 bits before every quantized product, exactly as
llama.cpp's x86 code rounds them (its q8_0/q8_1/q8_K blocks): one byte product per weight. The
results are then as close to an exact float64 computation as llama.cpp's own (a test compares the
two on every reference model), and a product over many tokens does half the multiplies it would
with 16 bits: prefill 1.45-1.63x faster (1B-shaped files, AVX-512 VNNI, Zen 4). LLAMBA_ACTIVATIONS=16 keeps
~16 bits instead: two byte products per weight, results ~50x closer to the exact computation than
llama.cpp's (within 2e-5 per product; the greedy and perplexity checks hold to 0.01 and 0.1% under
it). Either width gives every path the same results bit for bit, and a token the same result
whatever its batch.

LLAMBA_KERNELS=<path> forces a path the CPU can run (an AVX-512 machine runs the avx2 and
generic kernels: that is how the tests cover them). Numba then compiles for the features of that
path's CPU class (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES), so LLVM's own vectorization is that class's
too, and numba's cache, which is keyed by them, keeps each path's code apart.
"""
from __future__ import annotations

import os
import platform

import llvmlite.binding as llvm

PATHS = ("avx512vnni", "avx512bw", "avxvnni", "avx2", "neon", "generic")
X86_PATHS = PATHS[:4]

# The LLVM features each path needs.
NEEDS = {
    "avx512vnni": {"avx512f", "avx512bw", "avx512vnni"},
    "avx512bw": {"avx512f", "avx512bw"},
    "avxvnni": {"avx2", "avxvnni"},
    "avx2": {"avx2"},
    "neon": {"dotprod"},  # on aarch64, where NEON itself is always there
    "generic": set(),
}

# Features a forced path turns off, so that numba compiles as for that CPU class.
_ABOVE = {
    "avx512vnni": (),
    "avx512bw": ("avx512vnni", "avxvnni"),
    "avx2": ("avx512", "avxvnni", "avx10", "amx"),
    "avxvnni": ("avx512", "avx10", "amx"),
    "neon": (),
}
# On an AVX-512 VNNI CPU the avxvnni path keeps what the 256-bit EVEX vpdpbusd needs and drops the
# rest of AVX-512 (and so has features, and a numba cache, of its own).
_AVX512_ONLY = ("avx512ifma", "avx512vbmi", "avx512bitalg", "avx512vpopcntdq", "avx512bf16", "avx512fp16", "amx")


class KernelPathError(RuntimeError):
    pass


def _parse(features: str) -> dict[str, bool]:
    return {f[1:]: f[0] == "+" for f in features.split(",") if f[:1] in "+-" and len(f) > 1}


def target_features() -> dict[str, bool]:
    """The features numba compiles for: NUMBA_CPU_FEATURES if set, else the host's."""
    configured = os.environ.get("NUMBA_CPU_FEATURES")
    if configured is not None:
        return _parse(configured)
    if os.environ.get("NUMBA_CPU_NAME", "").lower() == "generic":
        return {}
    return dict(llvm.get_host_cpu_features())


def _is_aarch64() -> bool:
    return platform.machine().lower() in ("aarch64", "arm64")


def best_path(features: dict[str, bool]) -> str:
    have = {name for name, on in features.items() if on}
    arch_paths = ("neon",) if _is_aarch64() else X86_PATHS
    return next(p for p in PATHS if p == "generic" or p in arch_paths and NEEDS[p] <= have)


def runnable_paths() -> list[str]:
    """The paths this CPU can execute, best first (on x86 these include every lesser x86 path)."""
    host = {name for name, on in llvm.get_host_cpu_features().items() if on}
    arch_paths = ("neon",) if _is_aarch64() else X86_PATHS
    return [p for p in PATHS if p == "generic" or p in arch_paths and (
        NEEDS[p] <= host or p == "avxvnni" and {"avx512vnni", "avx512vl"} <= host)]


def _force(path: str) -> None:
    """Point numba at the CPU class of `path`, before it compiles anything."""
    if path not in PATHS:
        raise KernelPathError(f"LLAMBA_KERNELS={path!r}: not a kernel path (one of {', '.join(PATHS)})")
    if path not in runnable_paths():
        raise KernelPathError(f"LLAMBA_KERNELS={path}: this CPU ({llvm.get_host_cpu_name()}) cannot run "
                              f"the {path} kernels (it can run: {', '.join(runnable_paths())})")
    host = {name for name, on in llvm.get_host_cpu_features().items() if on}
    from numba.core import config
    from numba.core.registry import cpu_target
    if "_toplevel_target_context" in cpu_target.__dict__:
        raise KernelPathError("LLAMBA_KERNELS must be set before numba compiles anything (import engine first)")
    if path == "generic":
        os.environ["NUMBA_CPU_NAME"], os.environ["NUMBA_CPU_FEATURES"] = "generic", ""
    else:
        off = _ABOVE[path] if path != "avxvnni" or "avxvnni" in host else _AVX512_ONLY
        features = [("+" if f in host and not f.startswith(off) else "-") + f for f in llvm.get_host_cpu_features()]
        if off is _AVX512_ONLY:  # 256-bit vpdpbusd in its EVEX form, on a 256-bit diet
            features.append("+prefer-256-bit")
        os.environ["NUMBA_CPU_FEATURES"] = ",".join(features)
    config.reload_config()


def _select() -> str:
    forced = os.environ.get("LLAMBA_KERNELS", "auto").strip().lower()
    if forced not in ("", "auto"):
        _force(forced)
        return forced
    return best_path(target_features())


PATH = _select()


def _activation_bits() -> int:
    chosen = os.environ.get("LLAMBA_ACTIVATIONS", "8").strip() or "8"
    if chosen not in ("8", "16"):
        raise KernelPathError(f"LLAMBA_ACTIVATIONS={chosen!r}: must be 8 or 16")
    return int(chosen)


ACTIVATION_BITS = _activation_bits()


def describe() -> dict[str, str]:
    """The CPU and the kernels chosen for it, as benchmark results and the server report them."""
    info = dict(line.split(":", 1) for line in _cpuinfo() if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    model = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info:
        model += f" (family {info['cpu family']} model {info.get('model', '?')})"
    simd = sorted(f for f, on in llvm.get_host_cpu_features().items()
                  if on and f.startswith(("avx2", "avx512", "avxvnni", "fma", "neon", "dotprod", "i8mm", "sve")))
    return {"cpu": model, "cpu_name": llvm.get_host_cpu_name(), "simd": " ".join(simd), "kernels": PATH,
            "activation_bits": str(ACTIVATION_BITS)}


def _cpuinfo() -> list[str]:
    """The first processor's lines of /proc/cpuinfo (none where there is no such file)."""
    try:
        with open("/proc/cpuinfo") as f:
            return f.read().split("\n\n")[0].splitlines()
    except OSError:
        return []
