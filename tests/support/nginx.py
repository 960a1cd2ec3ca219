"""nginx on loopback with deploy/nginx.conf (the file docker-compose mounts) in front of a server."""
from __future__ import annotations

import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from . import ROOT, missing
from .server import free_port


@contextmanager
def nginx_in_front(upstream: str, tmp_path: Path):
    """Runs nginx with deploy/nginx.conf, its upstream pointed at `upstream` (a base URL), on a
    free port; yields nginx's base URL once it answers."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None or shutil.which("curl") is None:
        missing("nginx or curl (.ci/run installs nginx-light)")
    upstream_port = upstream.rsplit(":", 1)[1]
    port = free_port()
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    site = site.replace("server router:8000;", f"server 127.0.0.1:{upstream_port};").replace("listen 80;", f"listen 127.0.0.1:{port};")
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
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
