"""Shared column types and the metadata (with a naming convention, so migrations name constraints readably)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from enum import StrEnum

import orjson
from sqlalchemy import JSON, BigInteger, DateTime, MetaData, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

UTC = _dt.UTC


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in and out on both databases (SQLite stores naive UTC text, sortable as text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: _dt.datetime | None, dialect: Dialect) -> _dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: _dt.datetime | None, dialect: Dialect) -> _dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class APIDocument(TypeDecorator):
    """A JSON document written as the API renders it (orjson, RFC 3339 UTC times with a `Z`: the options of
    `app.http.dumps`), encoded once: an object stored as its GET answered it reads back equal to that answer."""

    impl = JSON
    cache_ok = True
    _OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC

    def bind_processor(self, dialect):  # noqa: ANN001, ANN201 - replaces the JSON type's json.dumps
        options = self._OPTIONS

        def process(value):  # noqa: ANN001, ANN202
            return None if value is None else orjson.dumps(value, option=options).decode()

        return process


def Id() -> String:
    return String(40)


MinorUnits = BigInteger  # integer minor units, always paired with a currency column


def one_of(column: str, values: Iterable[StrEnum]) -> str:
    """The check-constraint text that keeps `column` to the members of a state enum of policies/states.py."""
    return f"{column} IN ({', '.join(repr(str(value)) for value in values)})"
