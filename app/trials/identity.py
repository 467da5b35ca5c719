"""T5/D3: the identities of a person, as keyed one-way hashes (HMAC-SHA256 with BILLING_IDENTITY_KEY)."""

from __future__ import annotations

import hashlib
import hmac

from policies import normalise_email


def _mark(key: str, value: str) -> str:
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()


def person_identities(key: str, customer_id: str, emails: list[str | None]) -> list[str]:
    """T5: "person" means the same customer or the same email address (case and surrounding spaces ignored)."""
    values = {f"customer:{customer_id}"} | {f"email:{normalise_email(e)}" for e in emails if e}
    return sorted(_mark(key, v) for v in values)
