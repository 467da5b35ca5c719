"""I1: who issues the documents: `BILLING_SELLER_NAME`, `BILLING_SELLER_ADDRESS`, `BILLING_SELLER_TAX_ID` (api.md),
plus the seller's time zone, whose calendar year numbers them (`BILLING_SELLER_TIMEZONE`, policy.md's
`seller_timezone`, default UTC) and the exemption note printed on a zero-rated invoice when one is configured
(`BILLING_SELLER_TAX_EXEMPTION_NOTE`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from pydantic_settings import BaseSettings, SettingsConfigDict


class SellerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_SELLER_", extra="ignore")

    name: str = "Example Billing Ltd"
    address: str = ""  # lines separated by newlines (or "\n" in the variable)
    tax_id: str = ""
    timezone: str = "UTC"
    tax_exemption_note: str = ""


@dataclass(frozen=True)
class Seller:
    name: str
    address: str
    tax_id: str | None
    timezone: ZoneInfo
    exemption_note: str | None = None

    def as_document(self) -> dict:
        """The seller block of a document, as issued."""
        return {"name": self.name, "address": self.address or None, "tax_id": self.tax_id or None}


@functools.cache
def seller_from_env() -> Seller:
    settings = SellerSettings()
    return Seller(
        name=settings.name,
        address=settings.address.replace("\\n", "\n"),
        tax_id=settings.tax_id or None,
        timezone=ZoneInfo(settings.timezone),
        exemption_note=settings.tax_exemption_note or None,
    )
