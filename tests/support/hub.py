"""A Hugging Face hub on loopback, for `llamba pull` through the real `huggingface_hub` client: one
repository's files served under the hub's URL scheme (`/api/models/OWNER/REPO/tree/REV`,
`/api/models/OWNER/REPO/revision/REV`, `/OWNER/REPO/resolve/REV/FILE` with HEAD, ETag, the
commit header and byte ranges), the requests it was sent recorded, and a download that can be
cut short once to test resuming."""
from __future__ import annotations

import hashlib
import json
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@contextmanager
def loopback_hub(repo: str, files: dict[str, Path], cut_first_download_at: int | None = None):
    """Serves `files` (name in the repository -> file here) as `repo`; yields (endpoint, log):
    log lists (method, path, Range header) of every request."""
    log: list[tuple[str, str, str | None]] = []
    etags = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
    state = {"cut": cut_first_download_at}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # (quiet)
            pass

        def json(self, value) -> None:
            body = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def missing(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.send_header("X-Error-Code", "EntryNotFound")
            self.end_headers()

        def do_HEAD(self):
            self.serve(body=False)

        def do_GET(self):
            self.serve(body=True)

        def serve(self, body: bool) -> None:
            path = self.path.split("?")[0]
            log.append((self.command, path, self.headers.get("Range")))
            if path in (f"/api/models/{repo}/tree/main", f"/api/models/{repo}/revision/main"):
                if "tree" in path:
                    return self.json([{"type": "file", "path": n, "size": p.stat().st_size, "oid": etags[n]}
                                      for n, p in files.items()])
                return self.json({"id": repo, "sha": COMMIT, "siblings": [{"rfilename": n} for n in files]})
            match = re.fullmatch(rf"/{re.escape(repo)}/resolve/main/(.+)", path)
            if not match or match.group(1) not in files:
                return self.missing()
            data = files[match.group(1)].read_bytes()
            start = int(re.match(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-")).group(1))
            self.send_response(206 if start else 200)
            self.send_header("ETag", f'"{etags[match.group(1)]}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return
            if state["cut"] is not None and not start:  # the connection drops partway, once
                self.wfile.write(data[:state["cut"]])
                state["cut"] = None
                self.close_connection = True
                return
            self.wfile.write(data[start:])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()
