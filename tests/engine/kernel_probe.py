"""Run in a subprocess by test_kernel_paths.py:

    python -m tests.engine.kernel_probe outputs FILE.npz   # every kernel's products and every reference
                                                           # model's logits, computed
    python -m tests.engine.kernel_probe arguments FILE     # ASM_KERNELS' arguments, pickled
    python -m tests.engine.kernel_probe asm FILE           # their rows compiled, never run: JSON

`outputs` runs on a path this CPU can execute (LLAMBA_KERNELS). `arguments` runs natively and
pickles the arrays the quant kernels of ASM_KERNELS take (packing the weights and quantizing the activations
runs jitted code). `asm` runs with NUMBA_CPU_NAME / NUMBA_CPU_FEATURES set for another CPU: it
unpickles those arrays and only compiles, so it executes nothing built for that CPU (an AVX-512
instruction would stop it on an AVX2 machine); it prints the chosen path and, for each of those kernels,
how often each byte-dot-product instruction and each vector register width occurs in the
assembly of what one of its parallel tasks runs (rows_of_one_task)."""
import json
import pickle
import re
import sys
from collections import Counter
from pathlib import Path

import numba
from numba import njit
import numpy as np
from gguf import GGMLQuantizationType as T

from llamba.engine.kernels import Activations, SUPPORTED_TYPES, isa, k_quants, layout, legacy_quants, matmul, product
from tests.engine.test_kernels import random_weight
from tests.support import ALL_MODELS, loaded, reference

DOT_INSTRUCTIONS = r"\{vex\} vpdpbusd|vpdpbusd|vpmaddubsw|vpmaddwd|pmaddubsw|pmaddwd|sdot|udot"


def outputs(path: str) -> None:
    """Every kernel's products of random weights, and the logits of every reference model (the
    whole forward pass: attention, norms and RoPE are compiled for the path's CPU too) over its
    first greedy prompt and ten tokens more."""
    rng = np.random.default_rng(2024)
    results = {}
    for ttype in SUPPORTED_TYPES:
        for rows, k in ((48, 512), (32, 256)):  # (test_kernels.py's shapes)
            weight, _, _ = random_weight(ttype, rows, k, rng)
            for n in (1, 5, 7):  # one token (the decode kernels), and batches
                results[f"{ttype.name}-{rows}x{k}-{n}"] = matmul(weight, rng.standard_normal((n, k)).astype(np.float32))
    for name in ALL_MODELS:
        model, case = loaded(name).model, reference(name)["greedy"][0]
        ids = case["prompt_ids"] + case["output_ids"][:10]
        results[f"{name}-logits"] = model.forward(ids, 0, model.new_cache(len(ids)), all_logits=True)
    np.savez(path, **results)


# a product per weight width, each a branch of dot.py (4, 5, 6 and 8 bits), and a one-token
# product (which avx2 multiplies differently): the others differ from these only in their float
# arithmetic
ASM_KERNELS = {"Q4_K": T.Q4_K, "Q5_K": T.Q5_K, "Q6_K": T.Q6_K, "Q8_0": T.Q8_0, "Q4_K-one": T.Q4_K}
BLOCKS = {T.Q4_K: (k_quants._q4_k_block, k_quants.SCRATCH), T.Q5_K: (k_quants._q5_k_block, k_quants.SCRATCH),
          T.Q6_K: (k_quants._q6_k_block, k_quants.SCRATCH), T.Q8_0: (legacy_quants._q8_0_block, 0)}


def rows_of_one_task(ttype: T, one_token: bool):
    """What a product kernel of `ttype` runs in each of its parallel tasks (layout.each_task and
    each_task_of_one), as a function of its own: the same code, compiled without the parallel
    loop around it (which costs twice the time to compile: ~5 s a kernel on a Zen 1)."""
    block, scratch = BLOCKS[ttype]
    if one_token:
        return njit(lambda w, xq, a, out: layout.task_rows(block, 0, w, xq, a, out, 0, 1))
    return njit(lambda w, xq, a, out: layout.task_rows(block, scratch, w, xq, a, out, 0, xq[0].shape[0]))


def arguments(path: str) -> None:
    rng = np.random.default_rng(0)
    found = {}
    for name, ttype in ASM_KERNELS.items():
        weight, _, _ = random_weight(ttype, 16, 256, rng)
        found[name] = product(weight, Activations(np.ones((1, 256), np.float32)), np.empty((1, 16), np.float32))[1]
    Path(path).write_bytes(pickle.dumps(found))


def assembly(path: str) -> None:
    found = {}
    for name, args in pickle.loads(Path(path).read_bytes()).items():
        rows = rows_of_one_task(ASM_KERNELS[name], name.endswith("-one"))
        signature = tuple(numba.typeof(x) for x in args)
        rows.compile(signature)
        asm = rows.inspect_asm(signature)
        found[name] = dict(
            instructions=Counter(m.group(0) for m in re.finditer(DOT_INSTRUCTIONS, asm)),
            registers=Counter(r[:3] for r in re.findall(r"%(zmm|ymm|xmm)\d+", asm)))
    print(json.dumps(dict(path=isa.PATH, kernels=found)))


if __name__ == "__main__":
    {"outputs": outputs, "arguments": arguments, "asm": assembly}[sys.argv[1]](sys.argv[2])
