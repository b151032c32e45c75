"""CLIP's byte-level BPE tokenizer, producing the same token ids as OpenAI's.

The vocabulary file ``bpe_simple_vocab_16e6.txt.gz`` is OpenAI's (MIT licence, Copyright (c) 2021
OpenAI; see ``clip/LICENSE_CLIP_VOCAB``). Its first line is a header, then one merge per line.
The vocabulary is: the 256 byte symbols, the same with ``</w>`` (end of word), one entry per merge
for the first 49152 - 256 - 2 merges, then ``<|startoftext|>`` (49406) and ``<|endoftext|>``
(49407): 49408 entries.

Text is cleaned (``ftfy.fix_text``, HTML unescaped twice, whitespace collapsed), lower-cased and
split with OpenAI's regular expression; each piece is mapped byte-wise to printable unicode
symbols and merged by BPE rank.
"""

from __future__ import annotations

import gzip
import html
import os
from functools import lru_cache

import ftfy
import regex as re

VOCAB_FILE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "bpe_simple_vocab_16e6.txt.gz"
)
SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
N_MERGES = 49152 - 256 - 2

_PATTERN = re.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    re.IGNORECASE,
)


@lru_cache
def default_bpe() -> str:
    """Path of the vocabulary file shipped with the package."""
    return VOCAB_FILE


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """Reversible map from the 256 byte values to printable unicode characters.

    Printable Latin-1 bytes map to themselves; the others (control characters, space, ...) map to
    code points 256, 257, ... in byte order, so BPE never sees whitespace or control bytes.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    mapping = {b: chr(b) for b in printable}  # dict order matters: it is the vocab order
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping  # insertion order (printable bytes first) defines the vocabulary order


def get_pairs(word: tuple[str, ...]) -> set[tuple[str, str]]:
    """Set of adjacent symbol pairs of a word given as a tuple of symbols."""
    return set(zip(word[:-1], word[1:]))


def basic_clean(text: str) -> str:
    """Fix mojibake with ftfy and unescape HTML entities (twice, for double-escaped text)."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return text.strip()


def whitespace_clean(text: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return re.sub(r"\s+", " ", text).strip()


class SimpleTokenizer:
    """OpenAI CLIP tokenizer: ``encode`` (text -> ids, no SOT/EOT) and ``decode`` (ids -> text)."""

    def __init__(self, bpe_path: str | None = None) -> None:
        bpe_path = bpe_path or default_bpe()
        if not os.path.isfile(bpe_path):
            raise FileNotFoundError(
                f"BPE vocabulary {bpe_path} not found; it ships with the clip package "
                "(clip/bpe_simple_vocab_16e6.txt.gz)"
            )
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]
        if len(merges) != N_MERGES or any(len(m) != 2 for m in merges):
            raise ValueError(f"{bpe_path}: expected {N_MERGES} merge lines of two symbols each")
        symbols = list(self.byte_encoder.values())
        vocab = symbols + [s + "</w>" for s in symbols]
        vocab += ["".join(m) for m in merges]
        vocab += [SOT_TOKEN, EOT_TOKEN]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.decoder = {i: tok for tok, i in self.encoder.items()}
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.cache: dict[str, str] = {SOT_TOKEN: SOT_TOKEN, EOT_TOKEN: EOT_TOKEN}
        self.pat = _PATTERN
        self.sot_token = self.encoder[SOT_TOKEN]
        self.eot_token = self.encoder[EOT_TOKEN]

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def bpe(self, token: str) -> str:
        """BPE-merge one pre-token (already byte-mapped); symbols joined by spaces, cached."""
        cached = self.cache.get(token)
        if cached is not None:
            return cached
        word: tuple[str, ...] = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = get_pairs(word)
            best = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if best not in self.bpe_ranks:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        result = " ".join(word)
        self.cache[token] = result
        return result

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (without the SOT/EOT markers)."""
        ids: list[int] = []
        text = whitespace_clean(basic_clean(text)).lower()
        for piece in re.findall(self.pat, text):
            mapped = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[sym] for sym in self.bpe(mapped).split(" "))
        return ids

    def decode(self, tokens: list[int]) -> str:
        """Text of token ids; ``</w>`` becomes a space (so words end with one)."""
        text = "".join(self.decoder[int(t)] for t in tokens)
        raw = bytearray(self.byte_decoder[c] for c in text)
        return raw.decode("utf-8", errors="replace").replace("</w>", " ")
