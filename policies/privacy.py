"""D3: erasure reaches free text and stored responses: what staff typed about a person keeps its sense, not the
person, and a stored answer keeps every id, date, status and code it gave."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

ERASED = "[erased]"
MIN_NAME_WORD = 3  # a name's words this long or longer are erased on their own too ("Zebulon called")

# A token is a run of the characters identifiers are made of: letters, digits and `_ @ + -`, with a "." between
# two of them ("a.b@example.org", "12.50") and a ":" between two digits ("10:07:00"). An identifier counts only
# where it is the whole token, so "7" is not found in "pay_017", "2030-07-17T10:07:00Z" or "7:30", nor "Pro" in
# "pro-monthly", nor "ap@example.org" in "old.ap@example.org"; a "." or ":" with a space after it ends a sentence
# or a label, not a token ("mail from x@example.org.", "Zebulon: called", "ticket:7").
_BEFORE = r"(?<![\w@+\-])(?<!\w\.)(?<!\d:)"
_AFTER = r"(?![\w@+\-])(?!\.\w)(?!:\d)"
_EMAIL = _BEFORE + r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+" + _AFTER

# The fields of a Customer object (app/customers/schemas.py) that hold personal data.
PERSONAL_FIELDS = ("email", "name", "external_id", "country")
# I3/D3: the invoices and credit notes (app/invoices/schemas.py) whose `buyer` block names the customer; the
# documents themselves are kept as issued, their copies in events and stored responses are not.
DOCUMENT_OBJECTS = ("invoice", "credit_note")  # compared by equality: `object` may hold a dict (an event)
BUYER_FIELDS = ("name", "country", "address", "tax_id")
# The fields of a stored response whose text was typed by a person (staff's reasons, a problem's detail, the
# subject and body of a message) and may name someone; every other string (ids, codes, statuses, timestamps,
# plan codes, currencies) is never altered.
FREE_TEXT_FIELDS = frozenset({"reason", "detail", "subject", "body", "description", "note", "message"})
# Fields that name who acted; the person's own identifier there is replaced whole.
ACTOR_FIELDS = frozenset({"created_by", "actor"})


def _identifiers(identifiers: Iterable[str | None]) -> tuple[set[str], set[str]]:
    whole: set[str] = set()
    words: set[str] = set()
    for identifier in identifiers:
        value = (identifier or "").strip()
        if not value:
            continue
        whole.add(value)
        words.update(word for word in re.split(r"[\s,]+", value) if len(word) >= MIN_NAME_WORD and word != value)
    return whole, words


def redact(text: str | None, identifiers: Iterable[str | None], *, every_email: bool = False) -> str | None:
    """D3: `text` with the person's identifiers (name, e-mail, external id...) replaced by "[erased]", compared
    case-insensitively, each only as a whole token (letters, digits and `_@+-`, with `.` between two of them and
    `:` between two digits, see `_BEFORE`/`_AFTER`), so ids, dates, codes and words that merely contain one are
    left alone. Each word of an identifier of `MIN_NAME_WORD` (3) characters or more is erased on its own too, as
    a whole token, so a first name typed alone goes as well. With `every_email`, every e-mail address in the text
    goes too (used for the erased person's own records, where an address staff typed is theirs, perhaps one they
    corrected since, D2, which the service no longer holds).

    Limits, by design: a name word shorter than 3 characters ("Al", "Li") is erased only inside the whole name; a
    word of the name or a short external id that is also an ordinary word or number in the text is erased there
    too ("Active", "status active", "7 March" for the external id "7"): the text loses a word, never the person;
    a misspelt, abbreviated or differently split identifier ("Zeb", "Quixote-Smith" for "Quixote") is not
    recognised. None and text naming nobody come back unchanged."""
    if text is None:
        return None
    whole, words = _identifiers(identifiers)
    patterns = [re.escape(value) for value in sorted(whole | words, key=len, reverse=True)]
    if not patterns and not every_email:
        return text
    alternatives = [_EMAIL] if every_email else []
    if patterns:
        alternatives.append(_BEFORE + f"(?:{'|'.join(patterns)})" + _AFTER)
    return re.sub("|".join(alternatives), ERASED, text, flags=re.IGNORECASE)


def erase_from_response(
    document: Any, customer_id: str, identifiers: Iterable[str | None], *, every_email: bool = False
) -> Any:
    """D3: a stored response (decoded JSON) as it may be replayed after the customer's erasure: wherever the
    Customer object `customer_id` appears (recognised by its `object` and `id`, which are never altered), its
    personal fields are null, and so are those of the `buyer` of its invoices and credit notes (I3: copies, not the
    documents kept); the free text fields (`FREE_TEXT_FIELDS`) are redacted (`redact`); an actor field
    holding one of the identifiers is "[erased]". Ids, codes, statuses, timestamps and amounts are never altered,
    whatever they contain. The document given is not changed; a new one is returned."""
    whole, _ = _identifiers(identifiers)
    actors = {value.casefold() for value in whole}

    def scrub(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            is_the_customer = value.get("object") == "customer" and value.get("id") == customer_id
            scrubbed = {field: scrub(item, field) for field, item in value.items()}
            if is_the_customer:
                scrubbed.update(dict.fromkeys((field for field in PERSONAL_FIELDS if field in scrubbed), None))
            elif (
                value.get("object") in DOCUMENT_OBJECTS
                and value.get("customer_id") == customer_id
                and isinstance(scrubbed.get("buyer"), dict)
            ):
                scrubbed["buyer"] = dict.fromkeys(BUYER_FIELDS, None)
            return scrubbed
        if isinstance(value, list):
            return [scrub(item, key) for item in value]
        if isinstance(value, str) and key in FREE_TEXT_FIELDS:
            return redact(value, whole, every_email=every_email)
        if isinstance(value, str) and key in ACTOR_FIELDS and value.casefold() in actors:
            return ERASED
        return value

    return scrub(document)
