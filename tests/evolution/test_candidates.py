"""The offline backend's keyword candidates: words and bigrams, stop words dropped first."""

from __future__ import annotations

from amem.evolution.brain import _candidates


def test_words_and_bigrams_skip_stop_words_and_repeat_nothing():
    found = _candidates("caroline went to the lgbtq support group, and caroline went today!")
    # "to", "the", "and" are stop words: dropped before pairing, so "went lgbtq" is a bigram.
    assert "went lgbtq" in found and "to" not in found and "the lgbtq" not in found
    assert found == sorted(set(found))  # each once, sorted
    assert {"caroline", "caroline went", "support group", "group caroline", "today"} <= set(found)


def test_single_characters_and_long_grams_are_not_candidates():
    long = "x" * 39
    found = _candidates(f"a b {long} {long}y ok")
    assert "a" not in found and "b" not in found  # two word characters at least
    assert long in found and f"{long}y" in found
    assert f"{long} {long}y" not in found  # over 40 characters
    assert _candidates("the and of to") == []
