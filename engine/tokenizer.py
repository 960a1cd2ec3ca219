"""Tokenizers from a GGUF vocabulary: byte-level BPE (here) or SentencePiece (sentencepiece.py).

Byte-level BPE is a tiktoken `Encoding`. GGUF stores each token in GPT-2's printable byte alphabet
("Ġ" for a space); we map it back to raw bytes. tiktoken merges by rank, and for these vocabularies
a token's id is its merge rank (each merge's result has a larger id than its parts: checked by the
tests against `tokenizer.ggml.merges`), so ids serve as ranks. The pre-tokenizer regex is
llama.cpp's for `tokenizer.ggml.pre`.
"""
from __future__ import annotations

import codecs
import hashlib
import re
import weakref
from functools import lru_cache

import numpy as np
import tiktoken

from .errors import InvalidRequest
from .gguf_file import GGUFError, GGUFFile
from .sentencepiece import TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_USER_DEFINED, SentencePieceEncoder

# llama.cpp's pre-tokenizer regexes (llama-vocab.cpp), as one pattern each.
_GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_LLAMA3 = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
           r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
# llama.cpp first splits every digit off, then applies GPT-2's regex to what is between: in one
# pattern, a digit ends a whitespace run as the end of the text would (hence the lookahead).
_SMOLLM = r"""\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"""
# Qwen 2 / 2.5 / 3: Llama 3's with one digit at a time; Qwen 3.5's also keeps combining marks with letters.
_QWEN2 = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
          r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
_QWEN35 = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"""
           r"""| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
PRE_TOKENIZERS = {"llama-bpe": _LLAMA3, "llama3": _LLAMA3, "smollm": _SMOLLM, "gpt2": _GPT2,
                  "default": _GPT2, "qwen2": _QWEN2, "qwen35": _QWEN35}

# Tokens that end a generation, besides eos/eot ids from the metadata.
END_OF_GENERATION = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>", "<|endoftext|>", "<|end|>",
                     "<end_of_turn>")


# Models with one vocabulary (Llama 3.x's 1B, 3B and 8B; a model's quantizations) share one
# Tokenizer while any of them is loaded: tiktoken builds its encoder for 128k tokens in one call
# that holds the GIL for 80-200 ms (every other model's stream would stall while a model loads),
# and keeps tens of MB.
_shared: weakref.WeakValueDictionary[tuple, "Tokenizer"] = weakref.WeakValueDictionary()


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[int, int]:
    """Inverse of GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other
    bytes were shifted to code points 256 and up, in order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shifted = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = b
        else:
            table[256 + shifted] = b
            shifted += 1
    return table


class ByteLevelEncoder:
    """GPT-2-style byte-level BPE (`tokenizer.ggml.model = gpt2`) through tiktoken, which also
    finds the special tokens in the text (Llama 3 has 256: a regex over them in Python is slow)."""

    def __init__(self, tokens: list[str], token_types: list[int], pre: str, special: dict[str, int]):
        if pre not in PRE_TOKENIZERS:
            raise GGUFError(f"unsupported pre-tokenizer {pre!r} (tokenizer.ggml.pre); "
                            f"supported: {', '.join(sorted(PRE_TOKENIZERS))}")
        to_bytes = _unicode_to_byte()
        self.pieces = [text.translate(to_bytes).encode("latin-1", errors="ignore") if ttype == TOKEN_NORMAL
                       else text.encode() for text, ttype in zip(tokens, token_types)]
        ranks: dict[bytes, int] = {}
        for i, (raw, ttype) in enumerate(zip(self.pieces, token_types)):
            if ttype == TOKEN_NORMAL:
                ranks.setdefault(raw, i)
        self.encoding = tiktoken.Encoding(name=f"gguf-{pre}", pat_str=PRE_TOKENIZERS[pre],
                                          mergeable_ranks=ranks, special_tokens=special)
        self._single_bytes = frozenset(raw[0] for raw in ranks if len(raw) == 1)

    def encode(self, text: str, allowed_special: set[str] | str) -> list[int]:
        try:
            return self.encoding.encode(text, allowed_special=allowed_special, disallowed_special=())
        except BaseException as e:  # tiktoken panics (pyo3) on a byte the vocabulary lacks
            if type(e).__name__ != "PanicException":
                raise
            missing = sorted(set(text.encode()) - self._single_bytes)
            raise InvalidRequest("the text has characters this model's vocabulary cannot encode (UTF-8 bytes "
                                 f"{', '.join(f'0x{b:02x}' for b in missing) or 'unknown'})") from None


class Tokenizer:
    def __init__(self, tokens: list[str], token_types, pre: str, bos_id: int | None,
                 eos_id: int | None, add_bos: bool, eot_id: int | None = None, eom_id: int | None = None,
                 scores: list[float] | None = None, add_space_prefix: bool = True,
                 rstrip: frozenset[str] = frozenset()):
        """A byte-level BPE vocabulary, or with `scores` a SentencePiece one (sentencepiece.py).
        `rstrip`: special tokens that swallow the whitespace after them (llama.cpp's Phi-3 rule)."""
        self.special = {text: i for i, (text, ttype) in enumerate(zip(tokens, token_types))
                        if ttype in (TOKEN_CONTROL, TOKEN_USER_DEFINED)}
        self._user_defined = {text for text, ttype in zip(tokens, token_types) if ttype == TOKEN_USER_DEFINED}
        if scores is None:
            self.encoder = ByteLevelEncoder(tokens, token_types, pre, self.special)
            self.encoding: tiktoken.Encoding | None = self.encoder.encoding
        else:
            self.encoder, self.encoding = SentencePieceEncoder(tokens, token_types, scores, add_space_prefix), None
            # llama.cpp's order: the longest special text first
            by_length = sorted(self.special, key=len, reverse=True)
            self._specials = {parse: re.compile("|".join(re.escape(t) for t in by_length
                                                          if parse or t in self._user_defined) or "(?!)")
                              for parse in (False, True)}
        self.pieces: list[bytes] = self.encoder.pieces
        self._rstrip = rstrip
        self.vocab_size = len(tokens)
        self.bos_id, self.eos_id, self.add_bos = bos_id, eos_id, add_bos
        self.bos_token = tokens[bos_id] if bos_id is not None else ""
        self.eos_token = tokens[eos_id] if eos_id is not None else ""
        self._special_ids = frozenset(self.special.values())
        self.stop_ids = frozenset(
            {i for i in (eos_id, eot_id, eom_id) if i is not None}
            | {self.special[t] for t in END_OF_GENERATION if t in self.special})

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> "Tokenizer":
        meta = f.metadata
        model = meta.get("tokenizer.ggml.model")
        if model not in ("gpt2", "llama"):
            raise GGUFError(f"{f.path}: unsupported tokenizer model {model!r} (tokenizer.ggml.model); "
                            "llamba supports byte-level BPE ('gpt2') and SentencePiece ('llama')")
        needed = ["tokenizer.ggml.tokens", "tokenizer.ggml.token_type"]
        if model == "llama":
            needed.append("tokenizer.ggml.scores")
        for key in needed:
            if key not in meta:
                raise GGUFError(f"{f.path}: missing metadata key {key!r}")
        ids = {k: meta.get(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "eot", "eom")}
        n_tokens = len(meta["tokenizer.ggml.tokens"])
        for k, i in ids.items():
            if i is not None and not (isinstance(i, int) and 0 <= i < n_tokens):
                raise GGUFError(f"{f.path}: tokenizer.ggml.{k}_token_id {i!r} is not a token id (0..{n_tokens - 1})")
        tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
        pre = meta.get("tokenizer.ggml.pre", "default")
        # SentencePiece files add BOS and a leading space unless they say otherwise (as llama.cpp)
        add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", model == "llama"))
        add_space_prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
        # llama.cpp, by the model's name: Phi-3's special tokens but these take the spaces after them
        name = str(meta.get("general.name", "")).lower()
        rstrip = frozenset()
        if "phi-3" in name or "phi3" in name:
            specials = {t for t, ttype in zip(tokens.as_str(), types.tolist())
                        if ttype in (TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED)}
            rstrip = frozenset(specials | {"</s>"}) - {"<unk>", "<s>", "<|endoftext|>"}
        key = (tokens.digest(), hashlib.sha256(np.asarray(types).tobytes()).hexdigest(), model, pre, add_bos,
               add_space_prefix, bool(rstrip), *ids.values())
        tokenizer = _shared.get(key)
        if tokenizer is None:
            scores = meta["tokenizer.ggml.scores"].tolist() if model == "llama" else None
            tokenizer = cls(tokens.as_str(), types.tolist(), pre=pre, bos_id=ids["bos"], eos_id=ids["eos"],
                            add_bos=add_bos, eot_id=ids["eot"], eom_id=ids["eom"], scores=scores,
                            add_space_prefix=add_space_prefix, rstrip=rstrip)
            _shared[key] = tokenizer
        return tokenizer

    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of `text`: BOS first when `add_special` and the model asks for it; special-token
        text becomes its id only when `parse_special` (user-defined tokens always, as llama.cpp)."""
        try:
            text.encode()
        except UnicodeEncodeError:
            raise InvalidRequest("the text is not valid Unicode (it has a lone surrogate)") from None
        ids = [self.bos_id] if add_special and self.add_bos and self.bos_id is not None else []
        if self.encoding is not None:
            return ids + self.encoder.encode(text, "all" if parse_special else self._user_defined)
        after_special, at = True, 0  # SentencePiece: special tokens found here, the text between encoded
        for match in self._specials[parse_special].finditer(text):
            if match.start() > at:
                ids += self.encoder.encode(text[at:match.start()], after_special)
            ids.append(self.special[match.group()])
            after_special, at = True, match.end()
            if match.group() in self._rstrip:
                while at < len(text) and text[at] in " \t\n\v\f\r":
                    at += 1
        if at < len(text):
            ids += self.encoder.encode(text[at:], after_special)
        return ids

    def decode_bytes(self, ids) -> bytes:
        return b"".join(self.pieces[int(i)] for i in ids)

    def decode(self, ids) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return self.pieces[int(token_id)]

    def is_special(self, token_id: int) -> bool:
        return int(token_id) in self._special_ids


class StreamDecoder:
    """Turns tokens into text as they come, holding back an incomplete UTF-8 character."""

    def __init__(self, tokenizer: Tokenizer):
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self._tokenizer.token_bytes(token_id))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)
