"""Search terms (raychat/terms.py): what a message is indexed under and what a query asks for."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from raychat.terms import MAX_TERM_CHARS, MAX_TERMS, normalize, query_terms, terms

# Any text at all (surrogates cannot be sent as UTF-8, so they never reach the server).
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)
# Words as people type them: letters of several scripts, digits, marks, in any case.
word_chars = st.characters(categories=("Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Mn", "Mc"))
words = st.text(word_chars, min_size=1, max_size=12)
# Many examples (these rules meet every script), no deadline: timing is not the property, and the
# machine is shared.
PROPERTY = settings(max_examples=400, deadline=None)
separators = st.sampled_from([" ", "  ", ", ", ". ", "\n", "-", "'", "!? ", "\t", " 👍 ", "/"])


def message_of(ws: list[str], seps: list[str]) -> str:
    out = ws[0]
    for w, sep in zip(ws[1:], seps):
        out += sep + w
    return out


# ---- examples from the protocol ---------------------------------------------------------------

@pytest.mark.parametrize("message, query", [
    ("café", "ＣＡＦÉ"),              # fullwidth letters (NFKC) and case
    ("cafe\u0301", "CAFÉ"),          # decomposed accent (NFC/NFKC)
    ("straße", "STRASSE"),           # full case folding
    ("STRASSE", "straße"),
    ("ﬁnal", "final"),               # a ligature (NFKC)
    ("①②", "12"),                    # circled digits (NFKC)
    ("Don't panic", "don't"),        # the apostrophe separates, on both sides
    ("e-mail me", "E-Mail"),
    ("東京都に行きます", "京都"),        # a CJK run: any two adjacent characters
    ("東京都に行きます", "東京都"),
    ("東京都に行きます", "京"),          # a single character
    ("コーヒーを飲む", "コーヒー"),       # the prolonged sound mark stays in the run
    ("ｺｰﾋｰ", "コーヒー"),              # halfwidth katakana (NFKC)
    ("हिन्दी भाषा", "हिन्दी"),           # combining marks stay inside words
    ("iPhone用のケース", "iphone"),      # Latin and CJK split where the script changes
])
def test_a_query_finds_the_message(message, query):
    assert query_terms(query) and set(query_terms(query)) <= set(terms(message))


@pytest.mark.parametrize("message, query", [
    ("café", "cafe"),                # accents count
    ("dont", "don't"),               # "don" + "t" is not "dont"
    ("東京", "京都"),
    ("東京都", "東都"),                 # bigrams must each be there; these two never touch
    ("hello world", "hello there"),
])
def test_a_query_does_not_find_the_message(message, query):
    assert not set(query_terms(query)) <= set(terms(message))


def test_terms_are_normalized_words_in_order_without_repeats():
    assert terms("Hello, HELLO world! 👍 3.14") == ["hello", "world", "3", "14"]


def test_a_cjk_run_is_indexed_as_characters_and_pairs():
    assert terms("東京都") == ["東", "東京", "京", "京都", "都"]
    assert query_terms("東京都") == ["東京", "京都"]
    assert query_terms("東") == ["東"]


def test_cjk_punctuation_separates():
    assert terms("東京、大阪。") == ["東", "東京", "京", "大", "大阪", "阪"]


@pytest.mark.parametrize("q", ["", "   ", "!!!", "👍🎉", "...---...", "\u200b", "'-'"])
def test_a_query_without_a_word_has_no_terms(q):
    assert query_terms(q) == []


def test_a_long_word_is_cut_the_same_way_on_both_sides():
    long_word = "x" * 100 + "y"
    assert terms(long_word) == ["x" * MAX_TERM_CHARS]
    assert set(query_terms(long_word)) <= set(terms(f"see {long_word}"))


def test_a_message_keeps_only_its_first_distinct_terms():
    text = " ".join(f"w{i}" for i in range(MAX_TERMS + 50))
    got = terms(text)
    assert got == [f"w{i}" for i in range(MAX_TERMS)]
    assert query_terms(f"w{MAX_TERMS + 10}")[0] not in got


def test_a_long_cjk_message_stops_at_the_cap():
    text = "".join(chr(0x4E00 + i) for i in range(MAX_TERMS))        # 256 distinct Han characters
    got = terms(text)
    assert len(got) == MAX_TERMS and got[:3] == [text[0], text[:2], text[1]]


# ---- properties -------------------------------------------------------------------------------

@given(texts)
@PROPERTY
def test_terms_are_bounded_distinct_and_normalized(text):
    got = terms(text)
    assert len(got) <= MAX_TERMS
    assert len(set(got)) == len(got)
    for t in got:
        assert 0 < len(t) <= MAX_TERM_CHARS
        assert not any(c.isspace() for c in t)


@given(texts)
@PROPERTY
@example("ǰ")           # case folding leaves it decomposed; the second NFKC composes it again
def test_a_message_is_found_by_its_own_text(text):
    indexed = terms(text)
    if len(indexed) < MAX_TERMS:          # else the cap may have cut what the query asks for
        assert set(query_terms(text)) <= set(indexed)


@given(st.lists(words, min_size=1, max_size=20), st.lists(separators, min_size=19, max_size=19), st.data())
@PROPERTY
def test_any_words_of_a_message_find_it(ws, seps, data):
    message = message_of(ws, seps)
    picked = data.draw(st.lists(st.sampled_from(ws), min_size=1, max_size=5))
    query = " ".join(picked)
    assert set(query_terms(query)) <= set(terms(message))


@given(texts)
@PROPERTY
def test_canonical_and_compatibility_variants_have_the_same_terms(text):
    expected = terms(text)
    for form in ("NFC", "NFD", "NFKC", "NFKD"):
        assert terms(unicodedata.normalize(form, text)) == expected


# Turkish dotless ı and dotted İ: their case pairs (ı/I, i/İ) are Turkish only, and default
# (language-neutral) case folding keeps ı and i apart, so "ILIK" does not find "ılık". Known, and
# documented in raychat/terms.py.
non_turkic_words = st.text(st.characters(categories=("Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Mn", "Mc"),
                                         exclude_characters="ıİ"), min_size=1, max_size=12)


@given(st.lists(non_turkic_words, min_size=1, max_size=10), st.lists(separators, min_size=9, max_size=9))
@PROPERTY
def test_case_variants_of_a_query_find_the_message(ws, seps):
    message = message_of(ws, seps)
    indexed = set(terms(message))
    for variant in (message.upper(), message.lower(), message.casefold(), message.title(), message.swapcase()):
        assert set(query_terms(variant)) <= indexed, variant


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60))
@PROPERTY
def test_fullwidth_ascii_has_the_same_terms(text):
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in text)     # U+FF01..U+FF5E
    assert terms(fullwidth) == terms(text)


@given(texts)
@PROPERTY
def test_normalize_is_idempotent(text):
    once = normalize(text)
    assert normalize(once) == once
