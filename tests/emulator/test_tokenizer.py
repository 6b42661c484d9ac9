"""The model's tokenizer: the training data's words as tokens, exact round trips, bytes for unknown text."""

from __future__ import annotations

import pytest

from emulator.tokenizer import EOS, N_BASE, Tokenizer, pieces

TEXTS = ["English: Where is the station? Spanish:", "¿Dónde está la estación?", "English: Hello. Spanish:",
         "Hola."]


@pytest.mark.parametrize("text", ["", "Hola.", "¿Dónde está la estación de tren?", "a  b\n\tc ", "日本語 ok!!",
                                  "price: 3,50 €", "\u00e9\u0301 emoji 🙂"])
def test_pieces_cover_the_text_and_decoding_is_exact(text):
    tokenizer = Tokenizer.build(TEXTS, 100)
    assert "".join(pieces(text)) == text
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert Tokenizer().decode(Tokenizer().encode(text)) == text


def test_known_words_are_one_token_and_unknown_ones_their_bytes():
    tokenizer = Tokenizer.build(TEXTS, 100)
    assert pieces("¿Dónde está?") == ["¿", "Dónde", " está", "?"]
    known = tokenizer.encode("¿Dónde está?")
    assert len(known) == 4 and all(i >= N_BASE for i in known[1:3]) and known[3] == ord("?")
    assert tokenizer.encode(" gato") == list(b" gato")
    assert tokenizer.count("Hola. gato") == 2 + 5


def test_vocabulary_keeps_the_most_frequent_multibyte_pieces():
    tokenizer = Tokenizer.build(["la la la casa", "una mesa la"], 2)  # " la" 3 times; then ties: first seen
    assert tokenizer.vocabulary == [" la", "la"]
    assert tokenizer.vocab_size == 384  # 260 + 2 ids, padded to a multiple of 128
    assert Tokenizer.build(TEXTS, 0).vocabulary == []


def test_special_ids_decode_to_nothing():
    tokenizer = Tokenizer.build(TEXTS, 100)
    assert tokenizer.decode([*b"ok", EOS, 10_000]) == "ok"
