"""The ops console's server-side sign-in sessions (app/console/sessions.py)."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, String, Table

from app.models.base import UTCDateTime, metadata

console_sessions = Table(
    "console_sessions",
    metadata,
    # SHA-256 (hex) of the random session id the browser holds: a leaked table opens no session.
    Column("id_hash", String(64), primary_key=True),
    Column("staff", String(255), nullable=False, index=True),  # the ops token's `sub`
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),  # moved at most once a minute
    Column("expires_at", UTCDateTime, nullable=False),  # absolute end, whatever the activity
    CheckConstraint("role = 'ops'", name="role"),
)
