"""D3: erasure reaches free text: what staff typed about a person keeps its sense, not the person."""

from __future__ import annotations

import re
from collections.abc import Iterable

ERASED = "[erased]"
_MIN_WORD = 3  # a name's words this long or longer are erased on their own too ("Zebulon called")


def redact(text: str | None, identifiers: Iterable[str | None]) -> str | None:
    """D3: `text` with every occurrence of the person's identifiers (name, e-mail, external id...) replaced by
    "[erased]", compared case-insensitively; each word of an identifier (3 characters or more) is erased too,
    as a whole word, so a first name typed alone goes as well. None and text naming nobody come back unchanged."""
    if text is None:
        return None
    whole, words = set(), set()
    for identifier in identifiers:
        value = (identifier or "").strip()
        if not value:
            continue
        whole.add(value)
        words.update(word for word in re.split(r"[\s,]+", value) if len(word) >= _MIN_WORD and word != value)
    if not whole:
        return text
    patterns = [re.escape(value) for value in sorted(whole, key=len, reverse=True)]
    patterns += [rf"(?<!\w){re.escape(word)}(?!\w)" for word in sorted(words, key=len, reverse=True)]
    return re.sub("|".join(patterns), ERASED, text, flags=re.IGNORECASE)
