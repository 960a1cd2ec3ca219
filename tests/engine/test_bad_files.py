"""Broken GGUF files give one line naming what is wrong, never a numpy traceback."""
import shutil
import subprocess
import sys

import numpy as np
import pytest
from gguf import GGUFWriter

from tests.support import model_path
from llamba.engine.gguf_file import GGUFError, GGUFFile
from llamba.engine.loader import LoadedModel

SOURCE = "synth-llama3-tiny-f32"


def cli_error(path) -> str:
    run = subprocess.run([sys.executable, "-m", "llamba", "generate", "--model", str(path), "-p", "hi"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    return lines[0]


def test_bad_magic(tmp_path):
    bad = tmp_path / "bad-magic.gguf"
    data = bytearray(model_path(SOURCE).read_bytes()[:4096])
    data[:4] = b"GGML"
    bad.write_bytes(bytes(data))
    assert "bad magic b'GGML'" in cli_error(bad)


def test_truncated_header(tmp_path):
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(model_path(SOURCE).read_bytes()[:2000])
    assert "truncated" in cli_error(bad)


def test_tensor_data_past_the_end(tmp_path):
    source = model_path(SOURCE)
    last = max(GGUFFile(source).tensors.values(), key=lambda t: t.data.ctypes.data)
    bad = tmp_path / "short-data.gguf"
    bad.write_bytes(source.read_bytes()[:-64])
    message = cli_error(bad)
    assert f"tensor {last.name!r} data" in message and "runs past the end" in message


def test_empty_file(tmp_path):
    bad = tmp_path / "empty.gguf"
    bad.write_bytes(b"")
    assert "empty.gguf" in cli_error(bad)


def write_gguf(path, arch="llama", skip_key=None, q_shape=(32, 32), heads=2):
    w = GGUFWriter(str(path), arch)
    keys = {"context_length": 64, "embedding_length": 32, "block_count": 1, "feed_forward_length": 64,
            "attention.head_count": heads}
    for key, value in keys.items():
        if key != skip_key:
            w.add_uint32(f"{arch}.{key}", value)
    w.add_uint32(f"{arch}.vocab_size", 4)
    # one whole layer (kv heads default to the heads: k and v are 32 x 32 too)
    for name in ("attn_norm", "ffn_norm"):
        w.add_tensor(f"blk.0.{name}.weight", np.ones(32, np.float32))
    w.add_tensor("blk.0.attn_q.weight", np.zeros(q_shape, np.float32))
    for name, shape in (("attn_k", (32, 32)), ("attn_v", (32, 32)), ("attn_output", (32, 32)),
                        ("ffn_gate", (64, 32)), ("ffn_up", (64, 32)), ("ffn_down", (32, 64))):
        w.add_tensor(f"blk.0.{name}.weight", np.zeros(shape, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_missing_key_is_named(tmp_path):
    write_gguf(tmp_path / "m.gguf", skip_key="block_count")
    with pytest.raises(GGUFError, match="missing metadata key 'llama.block_count'"):
        LoadedModel.load(tmp_path / "m.gguf")


def test_unsupported_architecture_is_named(tmp_path):
    write_gguf(tmp_path / "a.gguf", arch="mamba")
    with pytest.raises(GGUFError, match="unsupported architecture 'mamba'"):
        LoadedModel.load(tmp_path / "a.gguf")


def test_wrong_tensor_shape_is_named(tmp_path):
    write_gguf(tmp_path / "s.gguf", q_shape=(32, 16))
    with pytest.raises(GGUFError, match=r"tensor 'blk.0.attn_q.weight' has shape \(32, 16\), expected \(32, 32\)"):
        LoadedModel.load(tmp_path / "s.gguf")


def test_head_size_the_attention_kernel_cannot_take_is_named(tmp_path):
    write_gguf(tmp_path / "h.gguf", heads=4)
    with pytest.raises(GGUFError, match="h.gguf: head size 8 .* is not a multiple of 16"):
        LoadedModel.load(tmp_path / "h.gguf")


def test_copy_of_good_file_loads(tmp_path):
    good = tmp_path / "good.gguf"
    shutil.copy(model_path(SOURCE), good)
    assert LoadedModel.load(good).model.config.dim == 64
