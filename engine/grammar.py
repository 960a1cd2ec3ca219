"""Constrained decoding: the tokens a grammar allows next, with llguidance (the library llama.cpp and
vLLM use), for JSON schemas, JSON mode, Lark or GBNF grammars and tool calls.

`Grammars(tokenizer)` is built once per model: llguidance's view of our vocabulary (the tiktoken
encoding built from the GGUF file, or each SentencePiece token's bytes; its special tokens, and
every end-of-generation token as an end of the grammar). `Grammars.constraint(grammar)` compiles
one request's grammar into a `Constraint`, which a `Sequence` (generate.py) asks before each
sampling for the tokens allowed (a bitmask computed by llguidance in microseconds) and tells each
token chosen. End-of-generation tokens are allowed only where the grammar may end; once it must
end, only they are.
"""
from __future__ import annotations

import json
import logging
from functools import cached_property

import llguidance
import numpy as np
from llguidance.gbnf_to_lark import any_to_lark
from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask
from llguidance import TokenizerWrapper
from llguidance.tiktoken import lltokenizer_from_encoding

from .errors import InvalidRequest
from .tokenizer import Tokenizer

log = logging.getLogger("llamba")

# JSON as OpenAI's structured outputs write it: no whitespace between tokens, so a small model
# cannot wander off into runaway newlines.
JSON_OPTIONS = {"whitespace_flexible": False}


# Integers without bounds get llama.cpp's 16 digits at most (its json-schema-to-grammar), so a
# small model cannot write digits until max_tokens.
LARGEST_INTEGER = 10**16 - 1


def bounded_integers(schema):
    """The schema with every integer that has no bounds bounded by +-LARGEST_INTEGER."""
    if isinstance(schema, list):
        return [bounded_integers(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    bounded = {key: bounded_integers(value) for key, value in schema.items()}
    types = schema.get("type")
    if types == "integer" or (isinstance(types, list) and types == ["integer"]):
        if not {"minimum", "exclusiveMinimum"} & schema.keys():
            bounded["minimum"] = -LARGEST_INTEGER
        if not {"maximum", "exclusiveMaximum"} & schema.keys():
            bounded["maximum"] = LARGEST_INTEGER
    return bounded


def json_schema_grammar(schema: dict | bool, param: str = "output") -> str:
    """A JSON schema as an llguidance grammar (any JSON object for `{"type": "object"}`)."""
    try:
        return llguidance.LLMatcher.grammar_from_json_schema(json.dumps(bounded_integers(schema)),
                                                             defaults=JSON_OPTIONS)
    except (ValueError, TypeError) as e:
        raise InvalidRequest(f"the JSON schema cannot be used: {e}", param=param) from None


def lark_grammar(text: str, param: str = "output") -> str:
    """A grammar in Lark's syntax (as llguidance reads it), or in GBNF (llama.cpp's), which
    llguidance converts."""
    try:
        return llguidance.LLMatcher.grammar_from_lark(any_to_lark(text))
    except Exception as e:  # noqa: BLE001 — GbnfToLarkError, or llguidance's own (an empty grammar, ...)
        raise InvalidRequest(f"the grammar cannot be used: {e}", param=param) from None


class Constraint:
    """One choice's grammar, followed token by token. A lazy one (`triggers`: texts) is inactive
    until the generated text starts with a trigger (a tool call in an answer that may be free
    text); it then follows the grammar from the start of the text."""

    def __init__(self, matcher: llguidance.LLMatcher, tokenizer: Tokenizer, triggers: tuple[str, ...] = ()):
        self.matcher, self.tokenizer, self.triggers = matcher, tokenizer, triggers
        self.state = "waiting" if triggers else "active"  # then "active", or "free" for good
        self.waited: list[int] = []  # tokens generated while waiting for a trigger
        self._mask = allocate_token_bitmask(1, tokenizer.vocab_size)

    def copy(self) -> "Constraint":
        """A fresh follower of the same compiled grammar (each choice of a request needs its own)."""
        return Constraint(self.matcher.deep_copy(), self.tokenizer, self.triggers)

    def allowed(self) -> np.ndarray:
        """A bool per token id: may it come next?"""
        fill_next_token_bitmask(self.matcher, self._mask)
        bits = np.unpackbits(self._mask.view(np.uint8), bitorder="little")
        return bits[:self.tokenizer.vocab_size].astype(bool)

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """The logits with every token the grammar does not allow next at -inf (unchanged unless
        the grammar is active)."""
        if self.state != "active" or self.matcher.is_error():
            return logits
        allowed = self.allowed()
        if not allowed.any():  # (the parser gave up, e.g. too complex): the choice ends at accept
            return logits
        return np.where(allowed, logits, np.float32(-np.inf)).astype(np.float32)

    def accept(self, token: int) -> bool:
        """Follow `token`; False if the grammar cannot (its parser gave up): the choice must end."""
        if self.state == "waiting":
            self.waited.append(token)
            text = self.tokenizer.decode(self.waited).lstrip()
            if any(text.startswith(t) for t in self.triggers):
                self.state = "active"  # the grammar follows the text from its start
                return all(self.accept(t) for t in self.waited)
            if text and not any(t.startswith(text) for t in self.triggers):
                self.state = "free"
        elif self.state == "active" and not self.matcher.consume_token(token):
            log.warning("constrained decoding stopped: %s", self.matcher.get_error().splitlines()[0])
            return False
        return True

    @property
    def finished(self) -> bool:
        """The grammar is complete and allows nothing more."""
        return self.state == "active" and self.matcher.is_stopped()


class _Vocabulary:
    """A vocabulary as llguidance's TokenizerWrapper reads one: each token's bytes, and plain text's ids."""

    def __init__(self, tok: Tokenizer):
        self.tok, self.tokens = tok, tok.pieces
        self.eos_token_id, self.bos_token_id = min(tok.stop_ids), tok.bos_id
        self.special_token_ids = sorted(tok.special.values())

    def __call__(self, text: str) -> list[int]:
        # (text within an answer: no leading space, which a prompt's first text gets where the file asks)
        return self.tok.encoder.encode(text, after_special=False)


class Grammars:
    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    @cached_property
    def lltokenizer(self) -> llguidance.LLTokenizer:
        tok = self.tokenizer
        if tok.encoding is not None:  # byte-level BPE: llguidance reads tiktoken's tables itself
            return lltokenizer_from_encoding(tok.encoding, n_vocab=tok.vocab_size, eos_token=sorted(tok.stop_ids))
        return llguidance.LLTokenizer(TokenizerWrapper(_Vocabulary(tok)), n_vocab=tok.vocab_size,
                                      eos_token=sorted(tok.stop_ids))

    def constraint(self, grammar: str, param: str = "grammar", triggers: tuple[str, ...] = ()) -> Constraint:
        """Compile `grammar` (an llguidance grammar, see json_schema_grammar and lark_grammar);
        a grammar llguidance cannot compile is an InvalidRequest naming `param`."""
        matcher = llguidance.LLMatcher(self.lltokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise InvalidRequest(f"the grammar cannot be used: {matcher.get_error()}", param=param)
        return Constraint(matcher, self.tokenizer, triggers)
