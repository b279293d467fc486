"""Search terms: the normalized words a message is indexed under, and the words a query asks for.

Pure text rules, no I/O (DESIGN.md, "Search"; docs/protocol.md, "Changes", "Search"):

1. **Normalize**: NFKC, Unicode full case folding, NFKC again (folding can leave a string that is
   not NFKC, e.g. "ǰ" folds to "ǰ" decomposed). So "ＣＡＦÉ", "Café" and "cafe\u0301" are all "café",
   and "STRASSE" and "straße" are both "strasse". Accents still count: "cafe" is not "café".
2. **Split** into words: a word is a maximal run of letters, numbers and combining marks (Unicode
   general categories L, N, M; marks so that Devanagari, Thai or Arabic words stay whole). Everything
   else separates words, apostrophes and hyphens included: "don't" is "don" + "t", "e-mail" is "e" +
   "mail". A query goes through the same split, so "don't" still finds "don't"; only the spelling
   without the separator ("dont") does not. Emoji and symbols are never terms.
3. **Scripts written without spaces** (Han, Hiragana, Katakana: Chinese and Japanese) have no word
   boundaries to split on. Each run of them is indexed as its single characters and its overlapping
   character pairs (bigrams: "東京都" → 東, 東京, 京, 京都, 都); a query run of two or more characters
   asks for its bigrams (all of them: "東京都" asks for 東京 and 京都), a one-character run for that
   character. Thai, Lao, Khmer, Myanmar and similar are split only at spaces and punctuation: a query
   finds them by a whole space-delimited run, not by a word inside one (a dictionary segmenter would
   be needed). Korean has spaces, but its particles stick to words ("서울에서" is one term).
4. **Bound** what one message can cost the index: a term is at most ``MAX_TERM_CHARS`` characters
   (longer words are cut there, for the message and the query alike, so the same long word still
   matches), and a message has at most ``MAX_TERMS`` distinct terms, the first ones in the text. A
   longer message is found by its first ``MAX_TERMS`` distinct terms only.

The character classes come from the ``regex`` module (Unicode properties, which the standard ``re``
lacks); normalization and folding from the standard library. Changing any rule here changes the
terms of new messages only: stored ones keep theirs until they are edited or reindexed.
"""

from __future__ import annotations

import unicodedata

import regex

MAX_TERM_CHARS = 64
MAX_TERMS = 256

# Script_Extensions, not Script: the prolonged sound mark "ー" and the iteration mark "々" belong to
# Japanese and Chinese text but are Script=Common. Intersected with letters, numbers and marks so
# that CJK punctuation ("、", "。") still separates.
_CJK = r"\p{scx=Han}\p{scx=Hiragana}\p{scx=Katakana}"
_WORDS = regex.compile(rf"(?V1)([[\p{{L}}\p{{N}}\p{{M}}]&&[{_CJK}]]+)|[[\p{{L}}\p{{N}}\p{{M}}]--[{_CJK}]]+")


def normalize(text: str) -> str:
    """NFKC, case folded, NFKC again: the form both sides of a search are compared in."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def terms(text: str) -> list[str]:
    """The distinct terms a message is indexed under, in order of first appearance, at most
    ``MAX_TERMS`` of them, each at most ``MAX_TERM_CHARS`` characters."""
    return _collect(text, query=False, cap=MAX_TERMS)


def query_terms(q: str) -> list[str]:
    """The terms a query asks for; a message matches when it has every one. Empty when ``q`` has
    no word in it (only spaces, punctuation or symbols): the caller refuses such a query."""
    return _collect(q, query=True, cap=None)


def _collect(text: str, *, query: bool, cap: int | None) -> list[str]:
    seen: dict[str, None] = {}      # an ordered set: first appearance wins
    for match in _WORDS.finditer(normalize(text)):
        word = match.group()
        if match.group(1) is None:
            seen[word[:MAX_TERM_CHARS]] = None
        else:
            seen.update(dict.fromkeys(_cjk_terms(word, query)))
        if cap is not None and len(seen) >= cap:
            return list(seen)[:cap]
    return list(seen)


def _cjk_terms(run: str, query: bool) -> list[str]:
    if len(run) == 1:
        return [run]
    pairs = [run[i:i + 2] for i in range(len(run) - 1)]
    if query:
        return pairs                # the most selective terms the run implies
    # Single characters too, so a one-character query finds a message that has it inside a run.
    out = [t for pair in pairs for t in (pair[0], pair)]
    out.append(run[-1])
    return out
