"""Run in a subprocess by test_kernel_paths.py, with LLAMBA_KERNELS or NUMBA_CPU_* set:

    python tests/engine/kernel_probe.py outputs FILE.npz   # every kernel's products, computed
    python tests/engine/kernel_probe.py asm                # every kernel compiled, never run: JSON

`asm` prints the chosen path and, for each quant type, how often each byte-dot-product
instruction and each vector register width occurs in the kernel's assembly. It only compiles, so
it works for CPUs other than this one."""
import json
import re
import sys
from collections import Counter
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for support
sys.path.insert(0, str(Path(__file__).resolve().parent))
from llamba.engine.kernels import Activations, SUPPORTED_TYPES, FLOAT_TYPES, isa, matmul, product  # noqa: E402
from test_kernels import random_weight  # noqa: E402

QUANT_TYPES = [t for t in SUPPORTED_TYPES if t not in FLOAT_TYPES]
DOT_INSTRUCTIONS = r"\{vex\} vpdpbusd|vpdpbusd|vpmaddubsw|vpmaddwd|pmaddubsw|pmaddwd|sdot|udot"


def outputs(path: str) -> None:
    rng = np.random.default_rng(2024)
    results = {}
    for ttype in SUPPORTED_TYPES:
        weight, _, _ = random_weight(ttype, 48, 512, rng)
        for n in (1, 5):
            results[f"{ttype.name}-{n}"] = matmul(weight, rng.standard_normal((n, 512)).astype(np.float32))
    np.savez(path, **results)


def assembly() -> None:
    rng = np.random.default_rng(0)
    found = {}
    for ttype in QUANT_TYPES:
        weight, _, _ = random_weight(ttype, 16, 256, rng)
        a = Activations(np.ones((1, 256), np.float32))
        kernel, args = product(weight, a, np.empty((1, 16), np.float32))
        signature = tuple(numba.typeof(x) for x in args)
        kernel.compile(signature)
        asm = kernel.inspect_asm(signature)
        found[ttype.name] = dict(
            instructions=Counter(m.group(0) for m in re.finditer(DOT_INSTRUCTIONS, asm)),
            registers=Counter(r[:3] for r in re.findall(r"%(zmm|ymm|xmm)\d+", asm)))
    print(json.dumps(dict(path=isa.PATH, kernels=found)))


if __name__ == "__main__":
    outputs(sys.argv[2]) if sys.argv[1] == "outputs" else assembly()
