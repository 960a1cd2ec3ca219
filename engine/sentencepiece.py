"""SentencePiece vocabularies (`tokenizer.ggml.model = llama`: Llama 2, Mistral, TinyLlama, Phi-3,
Gemma), encoded as llama.cpp's SPM tokenizer does, through the `tokenizers` package.

llama.cpp merges adjacent pieces greedily, the pair whose merged piece has the highest score
first, and spells a character the vocabulary lacks as its UTF-8 bytes (`<0xE6>` tokens). A BPE
model whose merges are every split of every normal piece into two pieces, ranked by the merged
piece's score, with byte fallback, gives the same ids (checked against llama.cpp's own tokenizer
tests). Spaces are "▁", and text that starts the prompt or follows a special token gets one in
front where the file asks for it (`add_space_prefix`, the default).
"""
from __future__ import annotations

from tokenizers import Tokenizer as _Tokenizer
from tokenizers import models

# GGUF token types (tokenizer.ggml.token_type), as llama.cpp numbers them
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_BYTE = 1, 2, 3, 4, 6
SPACE = "▁"


def _piece_bytes(text: str, ttype: int) -> bytes:
    if ttype == TOKEN_BYTE and len(text) == 6 and text.startswith("<0x"):
        return bytes([int(text[3:5], 16)])
    return text.replace(SPACE, " ").encode()


class SentencePieceEncoder:
    def __init__(self, tokens: list[str], token_types: list[int], scores: list[float], add_space_prefix: bool):
        ids = {text: i for i, text in enumerate(tokens)}
        merges = []
        for i, (text, ttype) in enumerate(zip(tokens, token_types)):
            if ttype == TOKEN_NORMAL:
                merges += [(-scores[i], ids[text[:k]], ids[text[k:]], text[:k], text[k:]) for k in range(1, len(text))
                           if text[:k] in ids and text[k:] in ids]
        merges.sort()
        unknown = next((t for t, ttype in zip(tokens, token_types) if ttype == TOKEN_UNKNOWN), None)
        self._model = _Tokenizer(models.BPE(ids, [(left, right) for *_, left, right in merges], unk_token=unknown,
                                            byte_fallback=True, fuse_unk=True))
        self.add_space_prefix = add_space_prefix
        self.pieces = [_piece_bytes(text, ttype) for text, ttype in zip(tokens, token_types)]

    def encode(self, text: str, after_special: bool) -> list[int]:
        """Ids of plain text (no special tokens in it); `after_special`: it starts the prompt or
        follows a special token."""
        if self.add_space_prefix and after_special:
            text = " " + text
        if not text:
            return []
        return self._model.encode(text.replace(" ", SPACE), add_special_tokens=False).ids
