"""D3: an erasure removes the person's identifiers from free text typed by staff, and keeps the rest."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import ERASED, redact

NAME, EMAIL, EXTERNAL_ID = "Zebulon Quixote", "zebulon.q@example.org", "ext-zq-4711"
WHO = (NAME, EMAIL, EXTERNAL_ID)


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("Zebulon Quixote was charged twice", "[erased] was charged twice", id="D3-full-name"),
        pytest.param("ZEBULON QUIXOTE called", "[erased] called", id="D3-case-insensitive"),
        pytest.param("mail from Zebulon.Q@Example.org.", "mail from [erased].", id="D3-email-any-case"),
        pytest.param("ticket for ext-zq-4711, sorry", "ticket for [erased], sorry", id="D3-external-id"),
        pytest.param("Zebulon called; Mr Quixote's card", "[erased] called; Mr [erased]'s card",
                     id="D3-a-name-word-alone"),
        pytest.param("Zebulonia is a place", "Zebulonia is a place", id="D3-words-are-whole-words"),
        pytest.param("double charge on 3 March", "double charge on 3 March", id="D3-text-naming-nobody-unchanged"),
        pytest.param("", "", id="D3-empty"),
        pytest.param(None, None, id="D3-none-stays-none"),
    ],
)
def test_D3_redact(text, expected):
    assert redact(text, WHO) == expected


def test_D3_redact_without_identifiers_changes_nothing():
    assert redact("Zebulon Quixote", [None, "", "  "]) == "Zebulon Quixote"


def test_D3_redact_takes_identifiers_literally():
    assert redact("a.b+c (x) and axb+c", ["a.b+c (x)"]) == f"{ERASED} and axb+c"


# What identifiers are made of (no brackets: a replacement cannot then help spell one out with its neighbours).
identifier = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.@-_+"),
                     min_size=3, max_size=12).filter(lambda value: value.casefold() not in ERASED)
prose = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


@settings(max_examples=200, deadline=None, database=None)
@given(identifiers=st.lists(identifier, min_size=1, max_size=3), parts=st.lists(prose, max_size=4), data=st.data())
def test_D3_no_identifier_survives_redaction(identifiers, parts, data):
    """D3: whatever the text, once redacted no identifier occurs in it, in any case."""
    pieces = []
    for part in parts:
        pieces += [part, data.draw(st.sampled_from(identifiers)).swapcase()]
    redacted = redact("".join(pieces), identifiers)
    for value in identifiers:
        assert value.casefold() not in redacted.casefold()
