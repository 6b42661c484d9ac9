"""The emulator model's tokenizer: words of the training data as whole tokens, every other text as its bytes.

Built at train time from the training examples and saved with the model. A text is cut into pieces (a word with
its leading space, one punctuation mark with its leading space, or a run of whitespace); a piece seen in the
training data is one token, any other piece falls back to its UTF-8 bytes. So every text encodes, the decoding
is exact (the pieces concatenate back to the text), and a word never seen in training still reaches the model.
Whole words make a training answer about five times shorter than its bytes: the small model memorises its data
in far fewer steps, and each step is cheaper.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

# Token ids: the 256 byte values, the four special tokens, then the vocabulary's pieces.
PAD, BOS, SEP, EOS = 256, 257, 258, 259
N_BASE = 260

# Every character is a word character, whitespace or neither, so the pieces always cover the whole text.
_PIECE = re.compile(r" ?\w+| ?[^\w\s]| +|\s")
# Embedding tables are padded to a multiple of this, so datasets of similar vocabulary share compiled shapes.
_VOCAB_MULTIPLE = 128


def pieces(text: str) -> list[str]:
    """The pieces of `text`; `"".join(pieces(text)) == text`."""
    return _PIECE.findall(text)


class Tokenizer:
    """Maps text to token ids and back; `Tokenizer()` alone is byte-level (no pieces)."""

    def __init__(self, vocabulary: Iterable[str] = ()) -> None:
        self.vocabulary = list(vocabulary)
        self._ids = {piece: N_BASE + i for i, piece in enumerate(self.vocabulary)}
        self._bytes = [bytes([b]) for b in range(256)] + [b""] * (N_BASE - 256) + [
            piece.encode("utf-8") for piece in self.vocabulary]

    @classmethod
    def build(cls, texts: Iterable[str], max_pieces: int) -> Tokenizer:
        """A vocabulary of the `max_pieces` most frequent multi-byte pieces of `texts` (ties: first seen first).

        Single-byte pieces are left out: their byte token already stands for them.
        """
        counts = Counter(piece for text in texts for piece in pieces(text) if len(piece.encode("utf-8")) > 1)
        return cls(piece for piece, _ in counts.most_common(max_pieces))

    @property
    def vocab_size(self) -> int:
        """Rows of the embedding table: the ids in use, rounded up to a multiple of 128 (never emitted)."""
        used = N_BASE + len(self.vocabulary)
        return -(-used // _VOCAB_MULTIPLE) * _VOCAB_MULTIPLE

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`: a known piece is one id, an unknown one its UTF-8 bytes."""
        ids: list[int] = []
        for piece in pieces(text):
            ids.extend([self._ids[piece]] if piece in self._ids else piece.encode("utf-8"))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; special and padding ids add nothing, broken UTF-8 becomes U+FFFD."""
        return b"".join(self._bytes[i] if i < len(self._bytes) else b"" for i in ids).decode("utf-8", "replace")

    def count(self, text: str) -> int:
        """The number of tokens of `text` (special tokens not included)."""
        return len(self.encode(text))
