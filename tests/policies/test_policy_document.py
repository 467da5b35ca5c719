"""T1/T4/B5/P2/T7: the versioned policy document and the policy book."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from policies import (
    PolicyBook,
    PolicyDocument,
    PolicyError,
    load_policy_book,
    parse_policy,
    trial_terms,
)

VALID = """
version = "2027-01-01"
effective_from = 2027-01-01T00:00:00Z
[trial]
days = 14
notice_days_before_end = 3
[billing]
retry_schedule_days = [2, 5]
[tax_rates]
DE = "0.19"
FR = "0.20"
"""


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def doc(version: str, start: datetime, **settings) -> PolicyDocument:
    return PolicyDocument(version=version, effective_from=start, **settings)


def test_T1_T4_B5_P2_shipped_document_parses_with_defaults():
    book = load_policy_book()
    latest = book.latest
    assert latest.version == "2026-11-01"
    assert latest.effective_from == utc(2026, 1, 1)
    assert latest.trial_days == 30
    assert latest.notice_days_before_trial_end == 7
    assert latest.retry_schedule_days == (1, 3, 7)
    assert dict(latest.tax_rates) == {}
    assert latest == PolicyDocument(version="2026-11-01", effective_from=utc(2026, 1, 1))


def test_T1_T4_B5_P2_valid_document_parses_every_setting():
    document = parse_policy(VALID)
    assert document.version == "2027-01-01"
    assert document.trial_days == 14
    assert document.notice_days_before_trial_end == 3
    assert document.retry_schedule_days == (2, 5)
    assert dict(document.tax_rates) == {"DE": Decimal("0.19"), "FR": Decimal("0.20")}


def test_P2_tax_rates_are_read_only():
    document = parse_policy(VALID)
    with pytest.raises(TypeError):
        document.tax_rates["DE"] = Decimal("0.5")  # type: ignore[index]  # the point: it is read-only


def test_T7_effective_from_with_offset_is_normalised_to_utc():
    document = parse_policy('version = "v"\neffective_from = 2027-01-01T02:00:00+02:00\n')
    assert document.effective_from == utc(2027, 1, 1)
    assert document.effective_from.tzinfo is UTC


def test_B5_empty_retry_schedule_is_allowed():
    assert (
        parse_policy(
            'version = "v"\neffective_from = 2027-01-01T00:00:00Z\n[billing]\nretry_schedule_days = []\n'
        ).retry_schedule_days
        == ()
    )


BASE = 'version = "v"\neffective_from = 2027-01-01T00:00:00Z\n'


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(BASE + "[trial]\ndays = 0\n", id="T1-zero-trial-days"),
        pytest.param(BASE + "[trial]\ndays = -5\n", id="T1-negative-trial-days"),
        pytest.param(BASE + "[trial]\ndays = 30.0\n", id="T1-float-trial-days"),
        pytest.param(BASE + "[trial]\ndays = true\n", id="T1-bool-trial-days"),
        pytest.param(BASE + "[trial]\nnotice_days_before_end = -1\n", id="T4-negative-notice"),
        pytest.param(BASE + "[billing]\nretry_schedule_days = [3, 1, 7]\n", id="B5-unsorted-retries"),
        pytest.param(BASE + "[billing]\nretry_schedule_days = [1, 1]\n", id="B5-repeated-retry"),
        pytest.param(BASE + "[billing]\nretry_schedule_days = [0, 3]\n", id="B5-zero-day-retry"),
        pytest.param(BASE + "[billing]\nretry_schedule_days = 3\n", id="B5-retries-not-a-list"),
        pytest.param(BASE + "[tax_rates]\nDE = 0.19\n", id="P2-float-tax"),
        pytest.param(BASE + "[tax_rates]\nDE = 0\n", id="P2-int-tax"),
        pytest.param(BASE + '[tax_rates]\nDE = "nineteen"\n', id="P2-non-numeric-tax"),
        pytest.param(BASE + '[tax_rates]\nDE = "NaN"\n', id="P2-nan-tax"),
        pytest.param(BASE + '[tax_rates]\nDE = "-0.01"\n', id="P2-negative-tax"),
        pytest.param(BASE + '[tax_rates]\nDE = "1"\n', id="P2-tax-of-100-percent"),
        pytest.param(BASE + '[tax_rates]\nde = "0.19"\n', id="P2-lower-case-country"),
        pytest.param(BASE + '[tax_rates]\nDEU = "0.19"\n', id="P2-alpha3-country"),
        pytest.param(BASE + "tax_rates = 5\n", id="P2-tax-rates-not-a-table"),
        pytest.param(BASE + "surprise = 1\n", id="unknown-top-level-key"),
        pytest.param(BASE + "[trial]\nlength = 30\n", id="T1-unknown-trial-key"),
        pytest.param(BASE + "[billing]\ngrace_days = 3\n", id="B5-unknown-billing-key"),
        pytest.param(BASE + "[refunds]\nallowed = true\n", id="unknown-table"),
        pytest.param('version = "v"\neffective_from = 2027-01-01T00:00:00\n', id="T7-naive-datetime"),
        pytest.param('version = "v"\neffective_from = 2027-01-01\n', id="T7-date-not-datetime"),
        pytest.param('version = "v"\neffective_from = "2027-01-01T00:00:00Z"\n', id="T7-datetime-as-string"),
        pytest.param("effective_from = 2027-01-01T00:00:00Z\n", id="T7-missing-version"),
        pytest.param('version = "v"\n', id="T7-missing-effective-from"),
        pytest.param('version = ""\neffective_from = 2027-01-01T00:00:00Z\n', id="T7-empty-version"),
        pytest.param("version = 3\neffective_from = 2027-01-01T00:00:00Z\n", id="T7-numeric-version"),
        pytest.param("version = = 1\n", id="not-toml"),
    ],
)
def test_invalid_documents_raise_PolicyError(text):
    with pytest.raises(PolicyError):
        parse_policy(text)


def test_PolicyError_is_a_ValueError():
    assert issubclass(PolicyError, ValueError)


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"trial_days": 0}, id="T1-zero"),
        pytest.param({"notice_days_before_trial_end": -1}, id="T4-negative"),
        pytest.param({"retry_schedule_days": (7, 3)}, id="B5-unsorted"),
        pytest.param({"tax_rates": {"DE": 0.19}}, id="P2-float"),
        pytest.param({"tax_rates": {"gb": Decimal("0.2")}}, id="P2-lower-case"),
    ],
)
def test_direct_construction_is_validated_too(settings):
    with pytest.raises(PolicyError):
        doc("v", utc(2027, 1, 1), **settings)


def test_T7_naive_effective_from_refused_on_construction():
    with pytest.raises(PolicyError):
        doc("v", datetime(2027, 1, 1))


OLD = doc("2026-01-01", utc(2026, 1, 1), trial_days=30)
NEW = doc("2026-11-01", utc(2026, 11, 1), trial_days=7, notice_days_before_trial_end=3)
NEWEST = doc("2027-06-01", utc(2027, 6, 1), trial_days=14)
BOOK = PolicyBook((NEWEST, OLD, NEW))


def test_T7_book_is_sorted_by_effective_from():
    assert BOOK.documents == (OLD, NEW, NEWEST)
    assert BOOK.latest is NEWEST


@pytest.mark.parametrize(
    "when, expected",
    [
        pytest.param(utc(2025, 1, 1), OLD, id="T7-before-all-gives-earliest"),
        pytest.param(utc(2026, 1, 1), OLD, id="T7-exactly-at-first"),
        pytest.param(utc(2026, 10, 31, 23, 59, 59), OLD, id="T7-just-before-change"),
        pytest.param(utc(2026, 11, 1), NEW, id="T7-exactly-at-change"),
        pytest.param(utc(2027, 5, 31), NEW, id="T7-between"),
        pytest.param(utc(2030, 1, 1), NEWEST, id="T7-after-all"),
    ],
)
def test_T7_book_at(when, expected):
    assert BOOK.at(when) is expected


def test_T7_book_at_refuses_naive():
    with pytest.raises(ValueError):
        BOOK.at(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "started_at, days, version",
    [
        pytest.param(utc(2026, 10, 31, 23, 59), 30, "2026-01-01", id="T7-started-before-change-keeps-30"),
        pytest.param(utc(2026, 11, 1), 7, "2026-11-01", id="T7-started-after-change-gets-7"),
    ],
)
def test_T7_policy_book_picks_version_by_trial_start(started_at, days, version):
    terms = trial_terms(started_at, BOOK.at(started_at))
    assert terms.ends_at == started_at + timedelta(days=days)
    assert terms.policy_version == version


def test_T7_by_version():
    assert BOOK.by_version("2026-11-01") is NEW
    with pytest.raises(KeyError):
        BOOK.by_version("1999-01-01")


@pytest.mark.parametrize(
    "documents",
    [
        pytest.param((), id="empty"),
        pytest.param((OLD, doc("2026-01-01", utc(2027, 1, 1))), id="duplicate-version"),
        pytest.param((OLD, doc("other", utc(2026, 1, 1))), id="duplicate-effective-from"),
    ],
)
def test_T7_invalid_books(documents):
    with pytest.raises(PolicyError):
        PolicyBook(documents)


def test_T7_load_policy_book_reads_every_toml(tmp_path: Path):
    (tmp_path / "a.toml").write_text(VALID, encoding="utf-8")
    (tmp_path / "b.toml").write_text('version = "2026-01-01"\neffective_from = 2026-01-01T00:00:00Z\n')
    (tmp_path / "notes.txt").write_text("ignored")
    book = load_policy_book(tmp_path)
    assert [d.version for d in book.documents] == ["2026-01-01", "2027-01-01"]


def test_T7_load_policy_book_empty_dir(tmp_path: Path):
    with pytest.raises(PolicyError):
        load_policy_book(tmp_path)


def test_T7_load_policy_book_missing_dir(tmp_path: Path):
    with pytest.raises(PolicyError):
        load_policy_book(tmp_path / "nope")


def test_T7_load_policy_book_names_the_bad_file(tmp_path: Path):
    (tmp_path / "broken.toml").write_text(BASE + "[trial]\ndays = 0\n")
    with pytest.raises(PolicyError, match=r"broken\.toml"):
        load_policy_book(tmp_path)
