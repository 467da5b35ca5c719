"""P1/R2/R3/D4: text the service stores, shows, logs and mails carries no control characters; checked for every
string with hypothesis."""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.details import check_multi_line, check_name, check_single_line

PROPERTY = settings(max_examples=300, deadline=None, database=None)


def is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc" or ch in "\u2028\u2029"


@PROPERTY
@given(st.text(max_size=60))
def test_single_line_text_is_kept_exactly_or_refused_for_a_control_character(text):
    try:
        assert check_single_line(text) == text
    except ValueError:
        assert any(is_control(ch) for ch in text)
    else:
        assert not any(is_control(ch) for ch in text)


@PROPERTY
@given(st.text(max_size=60))
def test_multi_line_text_allows_only_line_feeds_and_tabs_among_controls(text):
    refused = any(is_control(ch) and ch not in "\n\t\u2028\u2029" for ch in text)
    if refused:
        with pytest.raises(ValueError):
            check_multi_line(text)
    else:
        assert check_multi_line(text) == text


@pytest.mark.parametrize("name", ["Ali\x07ce", "Ali\x1b[31mce", "Ali\u0085ce", "Ali\x7fce", "Ali\r\nce"])
def test_P1_a_name_with_a_control_character_is_refused(name):
    with pytest.raises(ValueError, match="control characters"):
        check_name(name)


def test_ordinary_unicode_is_kept():
    text = "Remboursement geste commercial — client fidèle ✓"
    assert check_single_line(text) == check_multi_line(text) == text
    assert check_name("  Zoë Ångström-O'Brien  ") == "Zoë Ångström-O'Brien"
