"""Every instruction-set path of the kernels (engine/kernels/isa.py).

Paths this CPU can run (an AVX-512 VNNI machine runs all four x86 paths and the generic one) are
run: every path gives the same products and the same logits of every reference model bit for bit
(so the kernel, greedy and perplexity checks, run natively, hold on each); and with 16-bit
activations (LLAMBA_ACTIVATIONS=16) the kernels follow a float64 product and the models the exact
computation, to that width's tighter bounds. Paths it cannot run (AVX-512 on an AVX2 machine, AVX-VNNI on
AMD, NEON on x86) are compiled for a CPU of their class and their assembly searched for the
instruction they are built on; for NEON, whose kernels numba can only compile on aarch64, the byte
dot product's own IR is compiled for aarch64 with llvmlite."""
import functools
import json
import subprocess
import sys

import llvmlite.binding as llvm
import numpy as np
import pytest
from llvmlite import ir

from llamba.engine.kernels import isa
from llamba.engine.kernels.dot import dot_ir
from tests.engine import kernel_probe
from tests.support import ROOT, background

HERE = ROOT / "tests" / "engine"
PROBE = [sys.executable, "-m", "tests.engine.kernel_probe"]  # (run from ROOT)
OTHER_PATHS = [p for p in isa.runnable_paths() if p != isa.PATH]
OTHER_WIDTH = {8: "16", 16: "8"}[isa.ACTIVATION_BITS]
OTHER_WIDTH_PATHS = sorted({isa.PATH, "avx2"} & set(isa.runnable_paths()))
# at the other width: the kernels on these paths, and the reference checks natively
OTHER_WIDTH_TESTS = ["test_kernels.py", "test_greedy.py", "test_perplexity.py", "test_family_quants.py"]

# CPUs of each x86 class, as numba is told to compile for them (NUMBA_CPU_NAME, NUMBA_CPU_FEATURES)
X86_CPUS = {
    "avx512vnni": ("icelake-server", "+avx2,+fma,+f16c,+avx512f,+avx512bw,+avx512vl,+avx512vnni"),
    "avx512bw": ("skylake-avx512", "+avx2,+fma,+f16c,+avx512f,+avx512bw,+avx512vl,-avx512vnni"),
    "avxvnni": ("alderlake", "+avx2,+fma,+f16c,+avxvnni,-avx512f"),
    "avx2": ("znver3", "+avx2,+fma,+f16c,-avx512f"),
    "generic": ("generic", ""),
}
DOT_INSTRUCTION = {"avx512vnni": "vpdpbusd", "avx512bw": "vpmaddubsw", "avxvnni": "vpdpbusd",
                   "avx2": "vpmaddubsw", "generic": "pmaddwd"}
WIDEST_REGISTER = {"avx512vnni": "zmm", "avx512bw": "zmm", "avxvnni": "ymm", "avx2": "ymm", "generic": "xmm"}


def run_tests(files: list[str], env: dict) -> subprocess.CompletedProcess:
    """These test files of tests/engine, in a fresh process with `env` set."""
    return background.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *(str(HERE / f) for f in files)], env)


def assert_passed(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


@functools.cache
def start_in_background() -> dict:
    """Every fresh process this module needs, on one thread each (a fresh process spends most of
    its time compiling, which numba does on one core), each with a numba cache of its own: its
    kernels compiled afresh, and no other process's cache index rewritten under it."""
    tmp = background.folder() / "paths"
    tmp.mkdir()

    def env(name: str, **more) -> dict:
        return {"NUMBA_NUM_THREADS": "1", "NUMBA_CACHE_DIR": str(tmp / f"numba-{name}"), **more}

    def products(path: str):
        return background.run(PROBE + ["outputs", str(tmp / f"{path}.npz")], env(path, LLAMBA_KERNELS=path))

    def assembly(path: str):
        cpu, features = X86_CPUS[path]
        return background.run(PROBE + ["asm", str(arguments.result())],
                              env(f"asm-{path}", NUMBA_CPU_NAME=cpu, NUMBA_CPU_FEATURES=features,
                                  LLAMBA_KERNELS="auto"))

    def make_arguments():
        """Every quant kernel's arguments, made natively (making them runs jitted code), pickled."""
        result = background.run(PROBE + ["arguments", str(tmp / "arguments.pickle")], env("native"))
        assert result.returncode == 0, result.stderr[-2000:]
        return tmp / "arguments.pickle"

    found = {path: background.submit(products, path) for path in OTHER_PATHS}
    found |= {f"width-{path}": background.submit(
        run_tests, OTHER_WIDTH_TESTS if path == isa.PATH else OTHER_WIDTH_TESTS[:1],
        env(f"width-{path}", LLAMBA_KERNELS=path, LLAMBA_ACTIVATIONS=OTHER_WIDTH)) for path in OTHER_WIDTH_PATHS}
    arguments = background.submit(make_arguments)  # before the jobs that wait for it: no deadlock
    found |= {f"asm-{path}": background.submit(assembly, path) for path in X86_CPUS}
    found["outputs"] = tmp
    return found


@pytest.fixture(scope="module")
def runs():
    return start_in_background()


@pytest.mark.parametrize("path", OTHER_WIDTH_PATHS)
def test_the_other_activation_width_passes_its_checks(path, runs):
    """The other width (16 bits where 8 is the default): every kernel against its reference
    product on each of these paths; natively, the greedy, perplexity and family checks too."""
    assert_passed(runs[f"width-{path}"].result())


def test_every_path_gives_the_same_products_and_logits_bit_for_bit(runs):
    """The native path's products (every kernel, on test_kernels.py's shapes) and reference models'
    logits, computed here, against each other path's. The kernel, greedy and perplexity checks
    run on the native path hold wherever these are the same: this stands for running them on every
    path (which took 8 minutes for the generic path alone on a Zen 1)."""
    native = runs["outputs"] / "native.npz"
    kernel_probe.outputs(str(native))
    reference = np.load(native)
    for path in OTHER_PATHS:
        result = runs[path].result()
        assert result.returncode == 0, result.stderr[-2000:]
        out = np.load(runs["outputs"] / f"{path}.npz")
        assert sorted(out.files) == sorted(reference.files)
        for key in reference.files:
            assert np.array_equal(out[key], reference[key]), f"{path} differs from {isa.PATH} on {key}"


@pytest.mark.parametrize("path", list(X86_CPUS))
def test_x86_kernels_compile_to_their_paths_instructions(path, runs):
    """Compiled (never run: the probe only unpickles arguments made natively and compiles) for a
    CPU of the path's class: the path is the one chosen, its dot instruction is in a kernel of
    each weight width (and a one-token kernel), and no register is wider than the class has."""

    def expected(name: str) -> str:
        """Bytes (Q8_0) would saturate vpmaddubsw: those paths multiply them in 16 bits (vpmaddwd);
        with 16-bit activations so does avx2 for 6-bit weights and every product over many tokens
        (dot.py)."""
        if path in ("avx2", "avx512bw") and name == "Q8_0" or path == "avx2" and isa.ACTIVATION_BITS == 16 and (
                name == "Q6_K" or not name.endswith("-one")):
            return "vpmaddwd"
        return DOT_INSTRUCTION[path]
    result = runs[f"asm-{path}"].result()
    assert result.returncode == 0, result.stderr[-2000:]
    probe = json.loads(result.stdout.splitlines()[-1])
    assert probe["path"] == path and sorted(probe["kernels"]) == sorted(kernel_probe.ASM_KERNELS)
    widths = ["xmm", "ymm", "zmm"]
    for name, kernel in probe["kernels"].items():
        assert kernel["instructions"].get(expected(name), 0) >= 8, (name, kernel)
        assert set(kernel["instructions"]) <= {DOT_INSTRUCTION[path], "vpmaddwd", "pmaddwd"}, (name, kernel)
        widest = max(kernel["registers"], key=widths.index)
        assert widest == WIDEST_REGISTER[path], (name, kernel["registers"])


def aarch64_assembly(path: str, features: str) -> str:
    """dot over 16 values for each weight width, as IR built by dot.py, compiled for aarch64."""
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    module = ir.Module("dot16")
    i32, vec = ir.IntType(32), ir.VectorType(ir.IntType(32), 16)
    for bits in (4, 5, 6, 8):
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [vec.as_pointer(), i32.as_pointer(),
                                                                  vec.as_pointer()]), f"dot16_{bits}")
        builder = ir.IRBuilder(fn.append_basic_block())
        w_ptr, act_ptr, out_ptr = fn.args
        w = [builder.load(builder.gep(w_ptr, [i32(i)])) for i in range(4)]
        acts = [builder.load(builder.gep(act_ptr, [i32(i)])) for i in range(16)]
        builder.store(dot_ir(builder, path, w, acts[0:4], acts[4:8], acts[8:12], acts[12:16], bits), out_ptr)
        builder.ret_void()
    triple = "aarch64-unknown-linux-gnu"
    module.triple = triple
    parsed = llvm.parse_assembly(str(module))
    machine = llvm.Target.from_triple(triple).create_target_machine(cpu="neoverse-n1", features=features, opt=3)
    return machine.emit_assembly(parsed)


def test_neon_dot_product_compiles_to_sdot_for_aarch64():
    asm = aarch64_assembly("neon", "+neon,+dotprod")
    for bits in (4, 5, 6, 8):
        body = asm.split(f"dot16_{bits}:")[1].split(".Lfunc_end")[0]
        assert body.count("sdot\tv") >= 8, body


def test_generic_dot_product_compiles_for_aarch64_without_dot_instructions():
    asm = aarch64_assembly("generic", "+neon,-dotprod")
    assert "sdot" not in asm and ("smull" in asm or "smlal" in asm or "mul\tv" in asm)
