"""T1/T4/B5/P2/T7/C4: the policy settings as a versioned, validated document (Kill Bill-style catalogue).

Each TOML file under ``policies/versions/`` is one version; a version applies from its ``effective_from``
instant. ``load_policy_book`` is the only I/O in the ``policies`` package.
"""

from __future__ import annotations

import re
import tomllib
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ._checks import require_aware

VERSIONS_DIR = Path(__file__).resolve().parent / "versions"
_COUNTRY = re.compile(r"[A-Z]{2}")
_TOP_KEYS = frozenset({"version", "effective_from", "trial", "billing", "plan_changes", "tax_rates"})
_TRIAL_KEYS = frozenset({"days", "notice_days_before_end"})
_BILLING_KEYS = frozenset({"retry_schedule_days"})
_PLAN_CHANGE_KEYS = frozenset({"allow_immediate_upgrade"})


class PolicyError(ValueError):
    """T7: raised for any invalid policy document or policy book; an invalid document is refused whole."""


def _empty_rates() -> Mapping[str, Decimal]:
    return MappingProxyType({})


def _int_setting(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise PolicyError(f"{name} must be >= {minimum}, got {value}")
    return value


def _utc_instant(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise PolicyError(f"effective_from must be a date-time with a UTC offset, got {value!r}")
    try:
        require_aware(value, "effective_from")
    except ValueError as exc:
        raise PolicyError(str(exc)) from exc
    return value.astimezone(UTC)


def _bool_setting(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(f"{name} must be true or false, got {value!r}")
    return value


def _retry_schedule(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise PolicyError(f"retry_schedule_days must be a list of integers, got {value!r}")
    days = tuple(_int_setting("retry_schedule_days[]", day, 1) for day in value)
    if any(later <= earlier for earlier, later in pairwise(days)):
        raise PolicyError(f"retry_schedule_days must be strictly increasing, got {list(days)}")
    return days


def _tax_rates(value: Any) -> Mapping[str, Decimal]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"tax_rates must be a mapping of country -> rate, got {value!r}")
    rates: dict[str, Decimal] = {}
    for country, rate in value.items():
        if not isinstance(country, str) or not _COUNTRY.fullmatch(country):
            raise PolicyError(f"tax_rates key must be an upper-case ISO 3166-1 alpha-2 code, got {country!r}")
        if not isinstance(rate, Decimal) or not rate.is_finite():
            raise PolicyError(f"tax_rates.{country} must be a finite Decimal, got {rate!r}")
        if not Decimal(0) <= rate < Decimal(1):
            raise PolicyError(f"tax_rates.{country} must satisfy 0 <= rate < 1, got {rate}")
        rates[country] = rate
    return MappingProxyType(dict(sorted(rates.items())))


@dataclass(frozen=True)
class PolicyDocument:
    """T1/T4/B5/P2/T7/C4: one validated version of the policy settings."""

    version: str  # e.g. "2026-11-01"
    effective_from: datetime  # tz-aware UTC
    trial_days: int = 30  # T1, >= 1
    notice_days_before_trial_end: int = 7  # T4, >= 0
    retry_schedule_days: tuple[int, ...] = (1, 3, 7)  # B5, strictly increasing, each >= 1, may be empty
    tax_rates: Mapping[str, Decimal] = field(default_factory=_empty_rates, hash=False)  # P2, read-only
    allow_immediate_upgrade: bool = True  # C4, optional key [plan_changes] (older versions stay valid)

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or not self.version or self.version != self.version.strip():
            raise PolicyError(f"version must be a non-empty string without surrounding spaces, got {self.version!r}")
        _int_setting("trial.days (T1)", self.trial_days, 1)
        _int_setting("trial.notice_days_before_end (T4)", self.notice_days_before_trial_end, 0)
        _bool_setting("plan_changes.allow_immediate_upgrade (C4)", self.allow_immediate_upgrade)
        object.__setattr__(self, "effective_from", _utc_instant(self.effective_from))
        object.__setattr__(self, "retry_schedule_days", _retry_schedule(self.retry_schedule_days))
        object.__setattr__(self, "tax_rates", _tax_rates(self.tax_rates))


def _table(data: Mapping[str, Any], name: str, allowed: frozenset[str] | None) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise PolicyError(f"[{name}] must be a table")
    if allowed is not None:
        _refuse_unknown(f"[{name}]", table, allowed)
    return table


def _refuse_unknown(where: str, table: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise PolicyError(f"unknown key(s) in {where}: {', '.join(unknown)}")


def _rate_from_text(country: str, value: Any) -> Decimal:
    if not isinstance(value, str):
        raise PolicyError(f'tax_rates.{country} must be a decimal string such as "0.19", got {value!r}')
    try:
        return Decimal(value.strip())
    except InvalidOperation as exc:
        raise PolicyError(f"tax_rates.{country} is not a decimal number: {value!r}") from exc


def parse_policy(text: str) -> PolicyDocument:
    """T1/T4/B5/P2/T7/C4: parse and validate one TOML policy document; unknown keys and floats are refused."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"not valid TOML: {exc}") from exc
    _refuse_unknown("the document", data, _TOP_KEYS)
    for required in ("version", "effective_from"):
        if required not in data:
            raise PolicyError(f"missing required key: {required}")
    trial = _table(data, "trial", _TRIAL_KEYS)
    billing = _table(data, "billing", _BILLING_KEYS)
    plan_changes = _table(data, "plan_changes", _PLAN_CHANGE_KEYS)
    rates = _table(data, "tax_rates", None)
    settings: dict[str, Any] = {}
    if "days" in trial:
        settings["trial_days"] = trial["days"]
    if "notice_days_before_end" in trial:
        settings["notice_days_before_trial_end"] = trial["notice_days_before_end"]
    if "retry_schedule_days" in billing:
        settings["retry_schedule_days"] = billing["retry_schedule_days"]
    if "allow_immediate_upgrade" in plan_changes:
        settings["allow_immediate_upgrade"] = plan_changes["allow_immediate_upgrade"]
    settings["tax_rates"] = {country: _rate_from_text(country, rate) for country, rate in rates.items()}
    return PolicyDocument(version=data["version"], effective_from=data["effective_from"], **settings)


@dataclass(frozen=True)
class PolicyBook:
    """T7: every policy version, sorted by effective_from; versions and effective_from instants unique."""

    documents: tuple[PolicyDocument, ...]

    def __post_init__(self) -> None:
        documents = tuple(self.documents)
        if not documents:
            raise PolicyError("a policy book needs at least one document")
        if not all(isinstance(document, PolicyDocument) for document in documents):
            raise PolicyError("a policy book holds PolicyDocument values only")
        documents = tuple(sorted(documents, key=lambda document: document.effective_from))
        versions = [document.version for document in documents]
        if len(set(versions)) != len(versions):
            raise PolicyError(f"duplicate policy version in {versions}")
        starts = [document.effective_from for document in documents]
        if len(set(starts)) != len(starts):
            raise PolicyError("two policy versions share the same effective_from")
        object.__setattr__(self, "documents", documents)

    def at(self, when: datetime) -> PolicyDocument:
        """T7: the newest document with effective_from <= when; if `when` precedes all, the earliest."""
        require_aware(when, "when")
        index = bisect_right([document.effective_from for document in self.documents], when)
        return self.documents[max(index - 1, 0)]

    @property
    def latest(self) -> PolicyDocument:
        """T7: the document with the newest effective_from (the offer for new decisions from then on)."""
        return self.documents[-1]

    def by_version(self, version: str) -> PolicyDocument:
        """T7: the document a recorded decision was taken under; KeyError if the version is unknown."""
        for document in self.documents:
            if document.version == version:
                return document
        raise KeyError(version)


def load_policy_book(directory: Path | None = None) -> PolicyBook:
    """T7: read and validate every *.toml in `directory` (default: policies/versions/); the package's only I/O."""
    folder = VERSIONS_DIR if directory is None else Path(directory)
    if not folder.is_dir():
        raise PolicyError(f"policy directory not found: {folder}")
    paths = sorted(folder.glob("*.toml"))
    if not paths:
        raise PolicyError(f"no *.toml policy documents in {folder}")
    documents = []
    for path in paths:
        try:
            documents.append(parse_policy(path.read_text(encoding="utf-8")))
        except (PolicyError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{path.name}: {exc}") from exc
    try:
        return PolicyBook(tuple(documents))
    except PolicyError as exc:
        raise PolicyError(f"{folder}: {exc}") from exc
