"""Shared request/response building blocks: request validation, and the declaration of response objects (a
Pydantic model per resource) from which both the OpenAPI schema and the serialiser `to_api` are derived."""

from __future__ import annotations

import keyword
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Row, Table

from policies.details import (
    check_country,
    check_currency,
    check_email,
    check_multi_line,
    check_name,
    check_single_line,
)


class RequestModel(BaseModel):
    """Request bodies refuse unknown and server-owned fields (no mass assignment), and text that no database
    stores as text (NUL characters)."""

    model_config = ConfigDict(extra="forbid", str_max_length=10_000)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


Email = Annotated[str, Field(max_length=320), AfterValidator(check_email)]
Name = Annotated[str, Field(max_length=400), AfterValidator(check_name)]
Country = Annotated[str, Field(min_length=2, max_length=2), AfterValidator(check_country)]
Currency = Annotated[str, Field(min_length=3, max_length=3), AfterValidator(check_currency)]
# Amounts are integer minor units; the upper bound keeps every sum inside a signed 64-bit column.
Amount = Annotated[int, Field(ge=0, le=10**12, strict=True)]


def _reason(value: str) -> str:
    if not value.strip():
        raise ValueError("a reason is required")
    return value.strip()


SingleLine = AfterValidator(check_single_line)
MultiLine = AfterValidator(check_multi_line)
# R2/R3: every discretionary action carries a non-empty reason: one line of text, without control characters.
Reason = Annotated[
    str,
    Field(min_length=1, max_length=1000, description="One line, without control characters."),
    AfterValidator(_reason),
    SingleLine,
]
PositiveAmount = Annotated[int, Field(ge=1, le=10**12, strict=True)]


class Money(BaseModel):
    """An amount of money in the API: integer minor units and a lower-case ISO 4217 currency code."""

    amount: int
    currency: str


# --- response objects: one declaration each, from which the OpenAPI schema and `to_api` are derived ----------------


class From:
    """Where a response field comes from when it is not the column of its own name: `From("plan_code")` renames a
    column; `From(amount="price_amount", currency="currency")` builds a nested object (e.g. `Money`) from columns,
    one per field of the nested model, in its order. Put it in the field's `Annotated[...]`; Pydantic ignores it."""

    __slots__ = ("column", "columns")

    def __init__(self, column: str | None = None, /, **columns: str) -> None:
        if (column is None) == (not columns):
            raise TypeError("From(column) or From(field=column, ...): one or the other")
        self.column = column
        self.columns: Mapping[str, str] = columns


@dataclass(frozen=True, slots=True)
class Given:
    """A response field that is not stored: the serialiser takes it as a keyword argument (default: the field's
    default), e.g. a subscription's `client_secret`, shown only in the response that created it."""


def serialiser(model: type[BaseModel], table: Table) -> Callable[..., dict[str, Any]]:
    """`to_api(row, **given) -> dict` for `model`, derived once from its fields: the constant `object` (its
    `Literal` default), then each field, in declaration order, read from the column of its name, or as `From` and
    `Given` declare. `row` is anything with the columns as attributes (a Row, a dataclass, `audit.changed(...)`).
    A field without a column in `table` fails here, at import.

    The function is generated as source: a dict display, like a hand-written one (no model is built on the read
    path; the values go to orjson as they are). For a SQLAlchemy `Row` it reads the columns by position, through
    the row's own name-to-position map: `row.name` costs a failed class attribute lookup first and is several
    times slower (bench/serialise.py)."""
    where = f"{model.__name__} (table {table.name})"
    columns = set(table.c.keys())

    def column(name: str, field: str) -> str:
        if name not in columns:
            raise TypeError(f"{where}: field {field!r} has no column {name!r}")
        if not name.isidentifier() or keyword.iskeyword(name):
            raise TypeError(f"{where}: column {name!r} is not an attribute name")
        return name

    # (key, value) of the dict display: a value is a constant, a parameter, a column or {field: column} (nested).
    items: list[tuple[str, tuple[str, Any]]] = []
    given: list[str] = []
    defaults: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        sources = [m for m in info.metadata if isinstance(m, From | Given)]
        if len(sources) > 1:
            raise TypeError(f"{where}: field {name!r} has more than one source")
        source = sources[0] if sources else None
        if name == "object":
            if source is not None or typing.get_origin(info.annotation) is not Literal:
                raise TypeError(f"{where}: `object` must be a Literal with its value as the default")
            items.append((name, ("constant", info.default)))
        elif isinstance(source, Given):
            if name in ("row", "_index"):
                raise TypeError(f"{where}: field {name!r} cannot be a parameter")
            given.append(name)
            defaults[f"_default_{name}"] = info.get_default(call_default_factory=True)
            items.append((name, ("parameter", name)))
        elif isinstance(source, From) and source.column is None:
            nested = typing.get_args(info.annotation) or (info.annotation,)
            shape = next((t for t in nested if isinstance(t, type) and issubclass(t, BaseModel)), None)
            if shape is None or list(source.columns) != list(shape.model_fields):
                raise TypeError(f"{where}: field {name!r} must map each field of its model, in order")
            items.append((name, ("nested", {sub: column(col, name) for sub, col in source.columns.items()})))
        else:
            items.append(
                (name, ("column", column(name if source is None or source.column is None else source.column, name)))
            )

    def display(read: Callable[[str], str]) -> str:
        def value(kind: str, what: Any) -> str:
            if kind == "constant":
                return repr(what)
            if kind == "parameter":
                return str(what)
            if kind == "nested":
                return "{" + ", ".join(f"{sub!r}: {read(col)}" for sub, col in what.items()) + "}"
            return read(what)

        return "{" + ", ".join(f"{key!r}: {value(*how)}" for key, how in items) + "}"

    parameters = "".join(f", {name}=_default_{name}" for name in given)
    to_api = _generate(f"to_api(row{parameters})", display, f"to_api of {model.__name__}", defaults)
    to_api.__qualname__ = f"to_api[{model.__name__}]"
    to_api.__doc__ = f"The {model.__name__} (a dict for orjson) of a {table.name} row; derived from the model."
    return to_api


def reader(table: Table, *names: str) -> Callable[[Any], tuple[Any, ...]]:
    """`read(row) -> tuple`: the columns `names` of a `table` row, in that order, as fast as `serialiser`'s."""
    columns = set(table.c.keys())
    for name in names:
        if name not in columns or not name.isidentifier() or keyword.iskeyword(name):
            raise TypeError(f"table {table.name}: no column {name!r}")
    return _generate(
        "read(row)", lambda read: "(" + "".join(f"{read(name)}, " for name in names) + ")", f"read of {table.name}"
    )


def _generate(
    signature: str, expression: Callable[[Callable[[str], str]], str], title: str, defaults: Mapping[str, Any] = {}
) -> Callable[..., Any]:
    """def {signature}: return {expression}, where `expression(read)` is source that reads each column `c` as
    `read(c)`: by position for a SQLAlchemy Row, else as an attribute. The position comes from the row's own
    name-to-position map, `Row._key_to_index` (SQLAlchemy 2.0 and 2.1; what `row.c` itself looks up, after a
    failed lookup of `c` on the Row class); tests/test_schemas.py checks that a Row and an object with the same
    attributes serialise alike."""
    source_code = (
        f"def {signature}:\n"
        f"    if type(row) is _Row:\n"
        f"        _index = row._key_to_index\n"
        f"        return {expression(lambda column: f'row[_index[{column!r}]]')}\n"
        f"    return {expression(lambda column: f'row.{column}')}\n"
    )
    namespace: dict[str, Any] = {"_Row": Row, **defaults}
    # The source holds only field names, column names checked by the callers, and reprs of constants.
    exec(compile(source_code, f"<{title}>", "exec"), namespace)
    function: Callable[..., Any] = namespace[signature.partition("(")[0]]
    return function


T = TypeVar("T", bound=BaseModel)


# A page of a list: newest first, `has_more` when a next page exists (app.pagination). Each resource's list is a
# subclass, `class PaymentList(ListOf[Payment])`, so that OpenAPI names it `PaymentList` (a bare `ListOf[Payment]`
# would be documented as `ListOf_Payment_`).
class ListOf(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool


def page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """The `ListOf` envelope around serialised objects."""
    return {"object": "list", "data": data, "has_more": has_more}
