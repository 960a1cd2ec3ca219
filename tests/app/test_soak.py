"""The soak (`python -m bench.soak`, 2,000 requests at concurrency 32 in the README) at a small
scale, run as that command: a mix of chat and completions, streamed and not, logprobs, stop
strings, clients hanging up — no status >= 500, every request finishes, every stream read whole
ends with [DONE], and the server idle with every KV slot free at the end."""
import json
import subprocess
import sys

from tests.support import MODEL, ROOT, SMOLLM2, model_path


def test_a_small_soak_leaves_no_errors_and_an_idle_server(tmp_path):
    model_path(SMOLLM2)  # skips with the reason when the default model is absent
    done = subprocess.run([sys.executable, "-m", "bench.soak", "--requests", "60", "--concurrency", "12",
                           "--parallel", "4", "--seed", "3", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    summary = json.loads((tmp_path / f"soak-{MODEL}.json").read_text())
    failures = [f for f in summary["failures"] if not f.startswith("resident memory")]  # (too few requests to judge)
    assert not failures, (failures, summary, done.stderr[-2000:])
    assert summary["hung_up"] > 0 and summary["streams_read_whole"] > 0
    assert set(summary["statuses"]) <= {"200", "hung up before an answer"}, summary["statuses"]
