"""Warmup (engine/warmup.py) compiles, in two processes at once, the serial twins of every kernel a
model's steps run, then the parallel and one-token kernels in the background: a real generation
(a prompt, then decoding) compiles nothing, on the twins before those are in and on them after,
and gives the same tokens. Fresh numba and packed-weight caches, in a fresh process, as a first start
after install."""
import functools
import json
import subprocess
import sys

import pytest

from tests.support import SMOLLM2, background, model_path

PROBE = r"""
import json, sys, time
from numba.core import event
from llamba.engine.generate import generate
from llamba.engine.kernels import DEFERRED_DECODE, QUANT_KERNELS, serial
from llamba.engine.loader import LoadedModel
from llamba.engine.sampling import SamplingParams
from llamba.engine.warmup import Warmup

compiled = []

class Compiles(event.Listener):
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__qualname__)

    def on_end(self, ev):
        pass

warmup = Warmup(sys.argv[1], "f16", parts=2)
warmup.start()  # before the model loads, as the server does
lm = LoadedModel.load(sys.argv[1])
event.register("numba:compile", Compiles())
seconds = warmup.run(lm.model)
compiled_in_run, deferred, twins = compiled[:], sorted(t.name for t in DEFERRED_DECODE), len(serial.waiting)
if sys.argv[2:] == ["stop"]:  # stopped before the background process is done, as a server can be
    warmup.close()
    print(json.dumps(dict(compiled_in_run=compiled_in_run, twins=twins, still_twins=len(serial.waiting))))
    sys.exit()
del compiled[:]
ids = lm.tokenizer.encode("The history of the city begins with a small settlement", add_special=True)
params = SamplingParams(temperature=0, max_tokens=3, ignore_eos=True)
before = [e.token_id for e in generate(lm.model, lm.tokenizer, ids, params, lm.model.new_cache(64))]
compiled_before = compiled[:]
while not warmup.poll():
    time.sleep(0.1)
del compiled[:]
tokens = [e.token_id for e in generate(lm.model, lm.tokenizer, ids, params, lm.model.new_cache(64))]
in_use = sorted(t.name for t, kernels in QUANT_KERNELS.items() if kernels[2].signatures)
# a second model of the same types (here the same file) finds every kernel in use
n_compiled, still_deferred = len(compiled), len(DEFERRED_DECODE)
second = Warmup(sys.argv[1], "f16", parts=2)
second.start()
second.run(lm.model)
print(json.dumps(dict(seconds=seconds, compiled_in_run=compiled_in_run, compiled_before=compiled_before,
                      compiled=compiled[:n_compiled], tokens=tokens, before=before, deferred=deferred, twins=twins,
                      still_twins=len(serial.waiting), still_deferred=still_deferred, one_token_kernels=in_use,
                      second=dict(deferred=len(second.deferred) + len(DEFERRED_DECODE),
                                  helper=second.background is not None, compiled=compiled[n_compiled:]))))
"""


MODELS = [SMOLLM2, "synth-llama3-small-q4_k_m"]


@functools.cache
def start_in_background() -> dict:
    """Each model's probe in a fresh process with fresh caches (tests/support/background.py), and
    a first start stopped early then a restart on the caches it left."""
    stopped = background.submit(lambda: (probe(MODELS[0], "warmup-stopped", "stop"),
                                         probe(MODELS[0], "warmup-stopped")))
    return {**{name: background.submit(probe, name) for name in MODELS}, "stopped": stopped}


def probe(name: str, caches: str = "", *mode: str) -> subprocess.CompletedProcess | None:
    try:
        path = model_path(name)
    except (pytest.skip.Exception, pytest.fail.Exception):  # (absent: the test names it)
        return None
    caches = background.folder() / (caches or f"warmup-{name}")
    return background.run([sys.executable, "-c", PROBE, str(path), *mode], {
        "NUMBA_CACHE_DIR": str(caches / "numba"), "LLAMBA_CACHE": str(caches / "llamba")}, timeout=600)


@pytest.mark.parametrize("name", MODELS)
def test_after_compile_kernels_a_generation_compiles_nothing(name):
    model_path(name)
    run = start_in_background()[name].result()
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.splitlines()[-1])
    print(f"{name}: kernels compiled in {result['seconds']:.1f} s, one-token ones deferred: {result['deferred']}")
    # before the background process is done the steps run the twins, after it the parallel kernels:
    # neither compiles anything, and both give the same tokens
    assert result["twins"] == 1 and result["still_twins"] == 0 and result["compiled_in_run"]
    assert result["compiled_before"] == [] and result["compiled"] == []
    assert len(result["tokens"]) == 3 and result["tokens"] == result["before"]
    assert result["deferred"] and result["still_deferred"] == 0 and result["one_token_kernels"] == result["deferred"]
    # (before, a second model put the first's one-token products back on the general kernels and
    # started a process to compile them again, beside the first model's steps)
    assert result["second"] == dict(deferred=0, helper=False, compiled=[])


def test_a_restart_loads_every_kernel_before_it_is_ready():
    """The same probe again on the caches the first left: nothing compiles, and the one-token
    kernels are in use from the start (no process is started for them)."""
    name = MODELS[0]
    assert start_in_background()[name].result().returncode == 0
    run = probe(name)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["compiled_in_run"] == result["compiled_before"] == result["compiled"] == [] and result["twins"] == 0
    assert result["tokens"] == result["before"] and len(result["tokens"]) == 3
    assert result["deferred"] == [] and result["still_deferred"] == 0 and result["one_token_kernels"]


def test_a_start_stopped_before_its_background_compile_begins_on_the_twins_again():
    """A server stopped within seconds of its first start: the next start loads the twins from the
    cache (compiling nothing itself) and compiles the parallel kernels in the background again."""
    model_path(MODELS[0])
    stopped, run = start_in_background()["stopped"].result()
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    first = json.loads(stopped.stdout.splitlines()[-1])
    assert first["compiled_in_run"] and first["twins"] == 1 and first["still_twins"] == 0  # (close gave them up)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["twins"] == 1 and result["still_twins"] == 0
    assert result["compiled_in_run"] == result["compiled_before"] == result["compiled"] == []
    assert result["tokens"] == result["before"] and len(result["tokens"]) == 3


def test_every_kernel_call_is_in_exactly_one_part():
    from llamba.engine.warmup import part
    calls = [(cost, object()) for cost in (5, 5, 5, 1, 1, 1, 1)]
    parts = [part(calls, i, 3) for i in range(3)]
    assert sorted(map(id, sum(parts, []))) == sorted(id(c) for _, c in calls)
    assert [len(p) for p in parts] == [3, 2, 2]  # each costly one apart, the cheap ones after
