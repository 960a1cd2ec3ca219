"""The `llamba` command: the engine's commands (engine/cli.py) and the app's own, `serve`."""
from __future__ import annotations

import argparse
import gc
import sys


def build_parser() -> argparse.ArgumentParser:
    from llamba.engine import cli as engine_cli  # (here, not above: main turns the collector off first)
    parser = argparse.ArgumentParser(prog="llamba", description="GGUF language models on numba")
    sub = parser.add_subparsers(dest="command", required=True)
    engine_cli.add_commands(sub)
    p = sub.add_parser("serve", help="run the OpenAI-compatible HTTP server")
    p.add_argument("--config", help="YAML configuration file (default: the packaged configs/default.yaml)")
    p.add_argument("--model", "-m", help="GGUF file to serve (replaces the configured models)")
    p.add_argument("--model-id", help="id under which --model is served (default: the file's name)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--threads", "-t", type=int)
    p.add_argument("--ctx", "-c", type=int)
    p.add_argument("--queue-size", type=int)
    p.add_argument("--parallel", type=int, help="requests generated together (continuous batching)")
    p.add_argument("--api-key", action="append", dest="api_keys")
    p.add_argument("--models-dir", help="a folder of GGUF files, each loaded when a request names it")
    p.add_argument("--max-loaded-models", type=int, help="models loaded at once (the least recently used unloads)")
    p.add_argument("--idle-unload", type=float, help="seconds before an unused model unloads (0: never)")
    p.add_argument("--no-webui", dest="webui", action="store_false", default=None,
                   help="no chat page at / (it answers 404)")
    p.add_argument("--no-speculative", dest="speculative", action="store_false", default=None,
                   help="no drafts from each request's context (the same answers, one token per step)")
    p.set_defaults(func=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    gc.disable()  # no collections while start-up makes its objects (why: engine/python_heap.py)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "serve":
            from .main import serve
            return serve(args)  # (which resumes them once its app is built)
    finally:
        gc.enable()
    from llamba.engine import cli as engine_cli
    return engine_cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
