"""D3: an erasure removes the person's identifiers from free text typed by staff and from stored responses, and
keeps the rest: every id, code, status and timestamp."""

import datetime as dt
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import ERASED, erase_from_response, redact
from policies.privacy import MIN_NAME_WORD

NAME, EMAIL, EXTERNAL_ID = "Zebulon Quixote", "zebulon.q@example.org", "ext-zq-4711"
WHO = (NAME, EMAIL, EXTERNAL_ID)


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("Zebulon Quixote was charged twice", "[erased] was charged twice", id="D3-full-name"),
        pytest.param("ZEBULON QUIXOTE called", "[erased] called", id="D3-case-insensitive"),
        pytest.param("mail from Zebulon.Q@Example.org.", "mail from [erased].", id="D3-email-any-case"),
        pytest.param("ticket for ext-zq-4711, sorry", "ticket for [erased], sorry", id="D3-external-id"),
        pytest.param(
            "Zebulon called; Mr Quixote's card", "[erased] called; Mr [erased]'s card", id="D3-a-name-word-alone"
        ),
        pytest.param("Zebulonia is a place", "Zebulonia is a place", id="D3-words-are-whole-words"),
        pytest.param("double charge on 3 March", "double charge on 3 March", id="D3-text-naming-nobody-unchanged"),
        pytest.param("", "", id="D3-empty"),
        pytest.param(None, None, id="D3-none-stays-none"),
        pytest.param("write to zebulon.q@example.org: done", "write to [erased]: done", id="D3-email-then-colon"),
        pytest.param(
            "see old.zebulon.q@example.org",
            "see old.zebulon.q@example.org",
            id="D3-an-email-inside-another-address-is-not-it",
        ),
        pytest.param(
            "Quixote: called, ticket:ext-zq-4711", "[erased]: called, ticket:[erased]", id="D3-label-colons-end-a-token"
        ),
        pytest.param(
            "ext-zq-47110 and xext-zq-4711", "ext-zq-47110 and xext-zq-4711", id="D3-external-id-only-as-a-whole-token"
        ),
    ],
)
def test_D3_redact(text, expected):
    assert redact(text, WHO) == expected


def test_D3_redact_without_identifiers_changes_nothing():
    assert redact("Zebulon Quixote", [None, "", "  "]) == "Zebulon Quixote"


def test_D3_redact_takes_identifiers_literally():
    assert redact("a.b+c (x) and axb+c", ["a.b+c (x)"]) == f"{ERASED} and axb+c"


# Finding 5: a one-character external id, and a name made of common words.
SHORT = ("Active Pro", "ap@example.org", "1")


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param(
            "refund pay_01m91xkjh98t1de2 of 2030-01-15T10:01:00Z, 12.1 usd",
            "refund pay_01m91xkjh98t1de2 of 2030-01-15T10:01:00Z, 12.1 usd",
            id="D3-ids-timestamps-and-amounts-survive-a-one-character-external-id",
        ),
        pytest.param(
            "ticket 1, case #1: 1:30 pm",
            "ticket [erased], case #[erased]: 1:30 pm",
            id="D3-a-short-external-id-as-a-whole-token",
        ),
        pytest.param(
            "moved to pro-monthly, product Proactive",
            "moved to pro-monthly, product Proactive",
            id="D3-a-name-word-inside-a-code-or-word-survives",
        ),
        pytest.param("Pro called; ACTIVE PRO again", "[erased] called; [erased] again", id="D3-name-words-alone"),
        pytest.param("status active", "status [erased]", id="D3-documented-limit-a-name-word-that-is-also-a-word"),
        pytest.param("mail old.ap@example.org", "mail old.ap@example.org", id="D3-a-previous-address-is-not-known"),
    ],
)
def test_D3_redact_short_and_common_identifiers(text, expected):
    """D3 (finding 5): identifiers only as whole tokens, so a short external id or a common name word spares the
    ids, timestamps and codes that contain it."""
    assert redact(text, SHORT) == expected


def test_D3_short_name_words_go_only_with_the_whole_name():
    assert redact("Al Li called; Al and Li too", ["Al Li"]) == "[erased] called; Al and Li too"


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param(
            "from old.ap@example.org and <X.Y+z@mail.example.co.uk>.",
            "from [erased] and <[erased]>.",
            id="D3-every-address",
        ),
        pytest.param(
            "refund pay_01m9 at 2030-01-15T10:01:00Z",
            "refund pay_01m9 at 2030-01-15T10:01:00Z",
            id="D3-no-address-nothing-changes",
        ),
        pytest.param("Active Pro (1)", "[erased] ([erased])", id="D3-identifiers-as-well"),
    ],
)
def test_D3_redact_every_email_takes_a_corrected_address_too(text, expected):
    """D3 with D2: in the erased person's own records an e-mail address is taken as theirs, perhaps one corrected
    since, which the service no longer holds."""
    assert redact(text, SHORT, every_email=True) == expected


CID = "cus_01m91xkjh98t1de2"
THE_CUSTOMER = {
    "id": CID,
    "object": "customer",
    "external_id": "1",
    "email": "ap@example.org",
    "name": "Active Pro",
    "country": "US",
    "status": "active",
    "created_at": "2030-01-15T10:01:00Z",
    "marketing_opt_out": False,
}
ERASED_CUSTOMER = {**THE_CUSTOMER, "external_id": None, "email": None, "name": None, "country": None}
OTHER_CUSTOMER = {**THE_CUSTOMER, "id": "cus_other1", "email": "x1@example.org"}
SUBSCRIPTION = {
    "id": "sub_01m91",
    "object": "subscription",
    "customer_id": CID,
    "plan": "pro-monthly",
    "status": "active",
    "current_period_end": "2030-02-15T10:01:00Z",
    "policy_version": "1",
}
REFUND = {
    "id": "re_01m91",
    "object": "refund",
    "payment_id": "pay_01m91",
    "amount": 1,
    "status": "succeeded",
    "reason": "Active Pro <ap@example.org> ticket 1",
    "created_by": "staff-1",
    "created_at": "2030-01-15T10:01:00Z",
}
REDACTED = "[erased] <[erased]> ticket [erased]"


@pytest.mark.parametrize(
    "document, expected",
    [
        pytest.param(THE_CUSTOMER, ERASED_CUSTOMER, id="D3-the-customer-object-personal-fields-null"),
        pytest.param(OTHER_CUSTOMER, OTHER_CUSTOMER, id="D3-another-customer-untouched"),
        pytest.param(
            {"object": "list", "data": [THE_CUSTOMER, OTHER_CUSTOMER], "has_more": False},
            {"object": "list", "data": [ERASED_CUSTOMER, OTHER_CUSTOMER], "has_more": False},
            id="D3-the-customer-found-anywhere",
        ),
        pytest.param(SUBSCRIPTION, SUBSCRIPTION, id="D3-ids-codes-statuses-and-timestamps-never-altered"),
        pytest.param(REFUND, {**REFUND, "reason": REDACTED}, id="D3-free-text-redacted"),
        pytest.param(
            {**REFUND, "created_by": "1"},
            {**REFUND, "created_by": ERASED, "reason": REDACTED},
            id="D3-the-person-as-actor",
        ),
        pytest.param(
            {
                "type": "https://billing.example.com/problems/x",
                "title": "Active",
                "code": "active",
                "status": 409,
                "detail": "Active Pro: 1 is active",
            },
            {
                "type": "https://billing.example.com/problems/x",
                "title": "Active",
                "code": "active",
                "status": 409,
                "detail": "[erased]: [erased] is [erased]",
            },
            id="D3-a-problem-detail",
        ),
    ],
)
def test_D3_erase_from_response(document, expected):
    """D3 (finding 5): a stored response loses the person, never an id, code, status or timestamp; the customer
    object is recognised by its id as stored, before anything is redacted."""
    before = repr(document)
    assert erase_from_response(document, CID, SHORT) == expected
    assert repr(document) == before  # the document given is not changed


# Tokens made like identifiers: letters and digits, joined by `. _ - @ +` (so a "." is only ever between two).
segment = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), min_size=1, max_size=5
)
token = st.builds(
    lambda parts, joins: "".join(p + j for p, j in zip(parts, joins, strict=False)) + parts[-1],
    st.lists(segment, min_size=1, max_size=3),
    st.lists(st.sampled_from("._-@+"), max_size=2),
)
identifier = token.filter(lambda value: value.casefold() not in ERASED)
SEPARATORS = " ,;()<>[]!?/\n\"'"
separator = st.text(st.sampled_from(SEPARATORS), min_size=1, max_size=3)
_SPLIT = re.compile("[" + re.escape(SEPARATORS) + "]+")


def _text(tokens: list[str], separators: list[str]) -> str:
    assert len(separators) >= len(tokens)
    return "".join(sep + tok for sep, tok in zip(separators, tokens, strict=False))


def _erasable(identifiers: list[str]) -> set[str]:
    """The oracle: what must go as a whole token (each identifier, each name word of 3 characters or more)."""
    words = {word for value in identifiers for word in value.split() if len(word) >= MIN_NAME_WORD}
    return {value.casefold() for value in identifiers} | {word.casefold() for word in words}


@settings(max_examples=300, deadline=None, database=None)
@given(
    identifiers=st.lists(identifier, min_size=1, max_size=3),
    tokens=st.lists(token, max_size=8),
    separators=st.lists(separator, min_size=12, max_size=12),
)
def test_D3_text_without_an_identifier_as_a_whole_token_is_never_altered(identifiers, tokens, separators):
    """D3 (finding 5): redaction never alters a string that has none of the identifiers as a whole token, however
    often they occur inside its ids, codes and words."""
    value = identifiers[0]
    tokens = [*tokens, f"x{value}", f"{value}1", f"pay_{value}", f"{value}-monthly"]  # inside bigger tokens
    erasable = _erasable(identifiers)
    text = _text([tok for tok in tokens if tok.casefold() not in erasable], separators)
    assert redact(text, identifiers) == text


@settings(max_examples=300, deadline=None, database=None)
@given(
    identifiers=st.lists(identifier, min_size=1, max_size=3),
    tokens=st.lists(token, max_size=6),
    separators=st.lists(separator, min_size=14, max_size=14),
    data=st.data(),
)
def test_D3_every_whole_token_occurrence_is_removed_and_nothing_else(identifiers, tokens, separators, data):
    """D3 (finding 5): each whole-token occurrence of an identifier, in any case, becomes "[erased]"; every other
    token is kept as it was, in its place."""
    erasable = _erasable(identifiers)
    kept = [tok for tok in tokens if tok.casefold() not in erasable]
    named = [data.draw(st.sampled_from(identifiers)).swapcase() for _ in range(len(kept) + 1)]
    mixed = [piece for pair in zip(named, [*kept, ""], strict=True) for piece in pair if piece]
    redacted = redact(_text(mixed, separators), identifiers)
    assert [t for t in _SPLIT.split(redacted) if t] == ["erased" if t in named else t for t in mixed]


timestamp = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)
).map(lambda when: when.isoformat().replace("+00:00", "Z"))
object_id = st.builds(
    lambda prefix, rest: f"{prefix}_{rest}",
    st.sampled_from(["pay", "sub", "re", "cus", "evt"]),
    st.text(st.sampled_from("0123456789abcdefghjkmnpqrstvwxyz"), min_size=8, max_size=26),
)
short_id = st.text(st.sampled_from("0123456789"), min_size=1, max_size=3)


@settings(max_examples=300, deadline=None, database=None)
@given(external_id=short_id, values=st.lists(timestamp | object_id | st.integers(0, 10**6).map(str), max_size=6))
def test_D3_ids_timestamps_and_amounts_survive_a_short_external_id(external_id, values):
    """D3 (finding 5): an external id of a few digits is never found inside an id, a timestamp or a longer
    number, in free text or in a stored response."""
    values = [value for value in values if value != external_id]
    text = ", ".join(values)
    assert redact(text, ["Active Pro", "ap@example.org", external_id]) == text
    document = {"object": "list", "data": [{"id": value, "created_at": value, "reason": value} for value in values]}
    assert erase_from_response(document, "cus_x", ["Active Pro", external_id]) == document
