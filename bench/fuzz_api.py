"""API fuzzing: schemathesis's `st run` over the server's own OpenAPI document, against a real
`llamba serve` on loopback with max_tokens capped (so valid requests are quick).

    python -m bench.fuzz_api [--max-examples 1000] [--model PATH]

Checks every answer: no status >= 500, statuses and content types the document declares, and
bodies that match their schemas (OpenAI's error shape for 4xx). `--max-examples` is per operation
and per phase; the run prints how many requests the server answered, by status (from its access
log), and the exit status is schemathesis's (0: no failure)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.server import answered_statuses, llamba_server

API_KEY = "sk-fuzz"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-examples", type=int, default=1000)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--workers", type=int, default=4)
    args = p.parse_args()
    flags = ["--api-key", API_KEY, "--ctx", "256", "--parallel", "4", "--queue-size", "64"]
    if args.model:
        flags += ["--model", str(args.model)]
    with tempfile.TemporaryFile("w+") as log:
        with llamba_server(flags, env={"LLAMBA_MAX_TOKENS_LIMIT": "4"}, log=log) as (base, _):
            run = subprocess.run(["st", "run", f"{base}/openapi.json", "--checks", CHECKS, "--max-examples",
                                  str(args.max_examples), "--workers", str(args.workers), "-H",
                                  f"Authorization: Bearer {API_KEY}", "--request-timeout", "120", "--phases", "examples,fuzzing,stateful",
                                  "--continue-on-failure"])
        log.seek(0)
        answered = answered_statuses(log.read())
    requests = sum(answered.values())
    print(json.dumps({"requests_answered": requests, "by_status": dict(sorted(answered.items())),
                      "schemathesis_exit": run.returncode}))
    sys.exit(run.returncode)


if __name__ == "__main__":
    main()
