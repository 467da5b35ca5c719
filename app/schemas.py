"""Shared request/response building blocks."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

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
    amount: int
    currency: str


class ListOf(BaseModel):
    object: str = "list"
    has_more: bool
