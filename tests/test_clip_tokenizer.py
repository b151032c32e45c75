"""clip.simple_tokenizer / clip.tokenize: ids derived independently from the vocabulary file."""

import gzip

import pytest
import torch

import clip
from clip.simple_tokenizer import (
    SimpleTokenizer,
    basic_clean,
    bytes_to_unicode,
    default_bpe,
    get_pairs,
    whitespace_clean,
)


@pytest.fixture(scope="module")
def tok():
    return SimpleTokenizer()


@pytest.fixture(scope="module")
def merges():
    with gzip.open(default_bpe(), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    return [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]


def _byte_id(ch: str, end_of_word: bool) -> int:
    """Id of a printable ASCII char: printable bytes come first, from '!' (33) onwards."""
    assert "!" <= ch <= "~"
    return ord(ch) - ord("!") + (256 if end_of_word else 0)


def _merge_id(merges, token: str) -> int:
    """Id of a merged symbol: 512 single symbols, then one entry per merge line."""
    hits = [i for i, m in enumerate(merges) if "".join(m) == token]
    assert len(hits) >= 1, token
    return 512 + hits[0]


def test_vocabulary_layout(tok, merges):
    assert tok.vocab_size == 49408 == 512 + len(merges) + 2
    assert tok.encoder["<|startoftext|>"] == 49406 == tok.sot_token
    assert tok.encoder["<|endoftext|>"] == 49407 == tok.eot_token
    assert len(bytes_to_unicode()) == 256 and len(set(bytes_to_unicode().values())) == 256
    assert get_pairs(("a", "b", "c", "b", "c")) == {("a", "b"), ("b", "c"), ("c", "b")}


def test_known_sentence_ids_derived_from_vocab_file(tok, merges):
    expected = [
        49406,
        _byte_id("a", True),
        _merge_id(merges, "photo</w>"),
        _merge_id(merges, "of</w>"),
        _byte_id("a", True),
        _merge_id(merges, "dog</w>"),
        _byte_id(".", True),
        49407,
    ]
    assert expected == [49406, 320, 1125, 539, 320, 1929, 269, 49407]
    ids = clip.tokenize("a photo of a dog.")
    assert ids.dtype == torch.long and ids.shape == (1, 77)
    assert ids[0, :8].tolist() == expected and ids[0, 8:].eq(0).all()


def test_class_names_with_digits_punctuation_accents_entities(tok, merges):
    ids = tok.encode("Audi S5 Coupe 2012")
    digits = [_byte_id(c, True) for c in "2012"]  # digits are split one by one
    assert ids[-4:] == digits
    assert _byte_id("5", True) in ids and tok.encode("audi s5 coupe 2012") == ids
    # "'s" is its own piece
    assert tok.encode("caesar's salad")[1] == _merge_id(merges, "'s</w>")
    assert tok.encode("A&amp;W root beer") == tok.encode("a&w root beer")
    assert tok.encode("A&amp;amp;W") == tok.encode("a&w")  # unescaped twice
    assert tok.decode(tok.encode("crème brûlée")) == "crème brûlée "
    assert tok.decode(tok.encode("Hello,   World!")) == "hello , world ! "
    assert tok.encode("  two\n\tlines ") == tok.encode("two lines")


def test_bpe_merges_follow_rank_order(tok, merges):
    # A word absent as a single token must come out as ranked merges whose concatenation is it.
    word = "zxqvkbrq"
    pieces = [tok.decoder[i] for i in tok.encode(word)]
    assert "".join(pieces) == word + "</w>"
    assert all(p in tok.encoder for p in pieces)


def test_cleaning_helpers():
    assert basic_clean("  caf&amp;eacute; ") == "café"
    assert whitespace_clean(" a \n\t b  ") == "a b"


def test_tokenize_truncation_and_errors():
    long_text = " ".join(["dog"] * 100)
    with pytest.raises(RuntimeError, match="dog dog"):
        clip.tokenize(long_text)
    out = clip.tokenize([long_text, "cat"], truncate=True)
    assert out.shape == (2, 77)
    assert out[0, -1].item() == 49407 and out[0, 0].item() == 49406
    assert out[0].argmax().item() == 76
    short = clip.tokenize("a photo", context_length=5)
    assert short.shape == (1, 5)
    assert clip.tokenize("a photo of a dog", context_length=4, truncate=True)[0].tolist() == [
        49406,
        320,
        1125,
        49407,
    ]
