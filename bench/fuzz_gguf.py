"""Broken model files: mutate a small GGUF file in many ways and load each one, as `llamba` would,
in a worker process watched from here. Each file must give either a working model (it encodes,
renders a chat prompt and runs a forward step) or one clean line naming the file and what is
wrong — never a crash (a signal), a hang (60 s), an out-of-memory or a traceback.

    python -m bench.fuzz_gguf --files 500 [--model PATH] [--seed 0]

Mutations, each at a place read from the file's own layout (gguf's reader): bit flips in the
header, metadata and tensor-info region; huge counts and lengths; truncation anywhere; tensor
offsets pointing anywhere; tensor shapes that disagree with the hyper-parameters; tensor types the
kernels lack or that do not exist; metadata values of the wrong size."""
from __future__ import annotations

import argparse
import json
import os
import select
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFReader

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "models" / "synth-llama3-tiny-f32.gguf"
HANG_SECONDS = 60


@dataclass
class Layout:
    """Byte positions in the source file worth breaking."""
    size: int
    header_end: int           # where tensor data starts
    counts: list[int]         # tensor count, metadata count (u64 each)
    lengths: list[int]        # u64 length prefixes of keys and strings
    value_types: list[int]    # u32 value types of metadata
    dims: list[int]           # u64 tensor dimensions
    tensor_types: list[int]   # u32 tensor types
    offsets: list[int]        # u64 tensor data offsets

    @classmethod
    def of(cls, path: Path) -> "Layout":
        reader = GGUFReader(path)
        lengths, value_types, dims, tensor_types, offsets = [], [], [], [], []
        for field in reader.fields.values():
            if field.name.startswith("GGUF."):
                continue
            starts = np.cumsum([0] + [p.nbytes for p in field.parts])[:-1] + field.offset
            lengths.append(int(starts[0]))       # the key's length
            value_types.append(int(starts[2]))   # after the key's length and bytes
            if len(field.parts) > 3 and field.parts[3].nbytes == 8 and field.types[0].name == "STRING":
                lengths.append(int(starts[3]))   # a string value's length
        for tensor in reader.tensors:
            parts = tensor.field.parts
            starts = np.cumsum([0] + [p.nbytes for p in parts])[:-1] + tensor.field.offset
            dims.append(int(starts[3]))
            tensor_types.append(int(starts[4]))
            offsets.append(int(starts[5]))
        return cls(path.stat().st_size, int(reader.data_offset), [8, 16], lengths, value_types, dims,
                   tensor_types, offsets)


def put(data: bytearray, at: int, fmt: str, value: int) -> None:
    struct.pack_into(fmt, data, at, value)


def pick(rng: np.random.Generator, options: list):
    """One of `options`, as it is (numpy's choice would turn large integers into floats)."""
    return options[int(rng.integers(len(options)))]


def mutate(source: bytes, layout: Layout, rng: np.random.Generator) -> tuple[str, bytes]:
    """One broken copy of `source` and what was done to it."""
    data = bytearray(source)
    kind = pick(rng, ["bit flips", "huge count", "huge length", "truncated", "tensor offset", "tensor shape",
                       "tensor type", "value type", "random header bytes"])
    if kind == "bit flips":
        for at in rng.integers(0, layout.header_end, rng.integers(1, 9)):
            data[at] ^= 1 << int(rng.integers(8))
    elif kind == "huge count":
        put(data, pick(rng, layout.counts), "<Q", int(pick(rng, [2**63 - 1, 2**64 - 1, 2**32, 10**9])))
    elif kind == "huge length":
        put(data, pick(rng, layout.lengths), "<Q", int(pick(rng, [2**64 - 1, 2**40, layout.size])))
    elif kind == "truncated":
        end = int(rng.integers(0, layout.size))
        return f"{kind} at {end}", bytes(data[:end])
    elif kind == "tensor offset":
        value = int(pick(rng, [rng.integers(0, layout.size), 2**64 - 1, 2**63, layout.size]))
        put(data, pick(rng, layout.offsets), "<Q", value)
    elif kind == "tensor shape":
        put(data, pick(rng, layout.dims), "<Q", int(pick(rng, [0, 1, 3, 2**32 + 64, 2**63, 64 * 1024])))
    elif kind == "tensor type":
        put(data, pick(rng, layout.tensor_types), "<I", int(pick(rng, [16, 17, 19, 20, 29, 39, 99, 2**31])))
    elif kind == "value type":
        put(data, pick(rng, layout.value_types), "<I", int(rng.integers(0, 14)))
    else:
        at = int(rng.integers(0, layout.header_end - 8))
        data[at:at + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
    return kind, bytes(data)


# --- the worker: loads the files it is given, one line of JSON per file ---------------------------
def worker() -> None:
    from llamba.engine.chat.template import TemplateError
    from llamba.engine.gguf_file import GGUFError
    from llamba.engine.loader import LoadedModel
    for line in sys.stdin:
        path = line.strip()
        try:
            lm = LoadedModel.load(path)
            lm.model.forward(lm.tokenizer.encode("Hello there"), 0, lm.model.new_cache(16))
            try:  # a template that loads but fails on a conversation fails that request only
                lm.chat_prompt_ids([{"role": "user", "content": "Hi"}])
            except TemplateError:
                pass
            result = {"outcome": "loads"}
        except GGUFError as e:
            message = str(e)
            clean = "\n" not in message and message.startswith(path)
            result = {"outcome": "error" if clean else "unclear error", "message": message}
        except BaseException as e:  # noqa: BLE001 — what the fuzzer is here to find
            result = {"outcome": "traceback", "message": f"{type(e).__name__}: {e}"[:500]}
        print(json.dumps(result), flush=True)


class Worker:
    def __init__(self, cache: str):
        env = {**os.environ, "LLAMBA_CACHE": cache}
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.fuzz_gguf", "--worker"], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def load(self, path: Path) -> dict:
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], HANG_SECONDS)
        if not ready:
            self.proc.kill()
            return {"outcome": "hang"}
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            return {"outcome": "crash", "message": f"worker ended with {code}"}
        return json.loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.alive():
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def fuzz(source: Path, files: int, seed: int = 0, log=print) -> Counter:
    """Outcome counts over `files` mutated copies of `source`; prints each failure."""
    rng = np.random.default_rng(seed)
    original = source.read_bytes()
    layout = Layout.of(source)
    outcomes = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        worker = Worker(str(Path(tmp) / "cache"))
        for i in range(files):
            kind, data = mutate(original, layout, rng)
            path = Path(tmp) / f"mutant-{i:04d}.gguf"
            path.write_bytes(data)
            started = time.monotonic()
            result = worker.load(path)
            outcomes[result["outcome"]] += 1
            if result["outcome"] not in ("loads", "error"):
                log(f"{path.name} ({kind}): {result['outcome']} after {time.monotonic() - started:.1f} s: "
                    f"{result.get('message', '')}")
            path.unlink()
            if not worker.alive():
                worker = Worker(str(Path(tmp) / "cache"))
        worker.close()
    return outcomes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=500)
    p.add_argument("--model", type=Path, default=DEFAULT_SOURCE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker()
    started = time.monotonic()
    outcomes = fuzz(args.model, args.files, args.seed)
    print(f"{args.files} mutated copies of {args.model.name} in {time.monotonic() - started:.0f} s: "
          + ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())))
    sys.exit(0 if set(outcomes) <= {"loads", "error"} else 1)


if __name__ == "__main__":
    main()
