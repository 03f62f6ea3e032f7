"""Context compression: the sentences that bear on the question survive, grouped under their passage."""

from __future__ import annotations

import hashlib

import numpy as np

from ragtune.index.compress import compress, content_words, sentences
from ragtune.types import Hit


def bag_of_words(texts):
    """A real (if crude) embedder: hashed content-word counts, L2-normalised."""
    out = np.zeros((len(texts), 64), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in content_words(text):
            out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1, norms)


HITS = [
    Hit("The fort was built by French settlers. Fort Caroline was rebuilt in 1964. It stands near the river.",
        "florida.txt", 0.9, "f0", {"dense_score": 0.6}),
    Hit("Jacksonville grew after the war. The great fire of 1901 destroyed 2,000 buildings.",
        "jacksonville.txt", 0.7, "j0", {"dense_score": 0.5}),
]


def test_sentences_split_on_end_punctuation_and_blank_lines():
    assert sentences('He said "Stop." Then left!\n\nNew block') == ['He said "Stop."', "Then left!", "New block"]


def test_headings_are_glued_to_the_sentence_after_them():
    text = "Warranty for the Q7\n\nLength of cover\nThe cover lasts 30 months. It starts at purchase.\n\n## Firmware 4.2\n\nIt adds frost alerts."
    assert sentences(text) == ["Warranty for the Q7 / Length of cover: The cover lasts 30 months.",
                               "It starts at purchase.", "Firmware 4.2: It adds frost alerts."]


def test_short_lines_that_are_not_headings_stay_in_their_sentence():
    # a wrapped formula ("O" / "2 will"), a "key: value" field, a code comment followed by code, a trailing heading
    assert sentences("Concentrated O\n2 will burn. Steel acts as fuel.") == ["Concentrated O\n2 will burn.",
                                                                           "Steel acts as fuel."]
    assert sentences("domain: Text embedding\napi_call: hub.load(x)") == ["domain: Text embedding\napi_call: hub.load(x)"]
    assert sentences("# Load the model\nmodel = hub.load(x)") == ["# Load the model\nmodel = hub.load(x)"]
    assert sentences("Intro text here.\n\n## Next steps") == ["Intro text here.", "## Next steps"]


def test_keeps_the_relevant_sentence_under_its_passage_and_drops_empty_passages():
    kept = compress("Which fort was rebuilt in 1964?", HITS, bag_of_words, keep=1)
    assert [(h.text, h.source, h.id, h.score) for h in kept] == [
        ("Fort Caroline was rebuilt in 1964.", "florida.txt", "f0", 0.9)]
    assert kept[0].metadata == {"dense_score": 0.6, "compressed_from": len(HITS[0].text)}


def test_kept_sentences_stay_in_reading_order_and_passage_order():
    kept = compress("When was the fort built and rebuilt, and what did the fire destroy?", HITS, bag_of_words, keep=3)
    assert [h.source for h in kept] == ["florida.txt", "jacksonville.txt"]
    assert kept[0].text == "The fort was built by French settlers. Fort Caroline was rebuilt in 1964."
    assert kept[1].text == "The great fire of 1901 destroyed 2,000 buildings."


def test_without_an_embedder_the_lexical_score_decides():
    kept = compress("How many buildings did the fire destroy?", HITS, None, keep=1)
    assert [h.text for h in kept] == ["The great fire of 1901 destroyed 2,000 buildings."]


def test_nothing_to_cut_returns_the_hits_unchanged():
    assert compress("anything", HITS, bag_of_words, keep=0) == HITS
    assert compress("anything", HITS, bag_of_words, keep=5) == HITS  # five sentences in all: none to drop
