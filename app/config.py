"""Settings, read once from `BILLING_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Used only while the sandbox is on and no secret was configured, so that the embedded default starts with no
# setup. Outside the sandbox a real secret is required (see `check_production`).
DEV_AUTH_SECRET = "dev-only-secret-do-not-use-in-production"
SANDBOX_WEBHOOK_SECRET = "whsec_sandbox"  # signs sandbox webhooks (e.g. completing a payment that needed action)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore")

    database_url: str = "sqlite:///./billing.db"
    auth_secret: str = ""
    # Key for the one-way hash of e-mail addresses that keeps one trial per person (T5) and survives erasure (D3).
    identity_key: str = ""
    sandbox: bool | None = None  # default: on when no Stripe key is configured
    demo_plans: bool | None = None  # default: follows sandbox
    # Which payment gateway moves money: the built-in sandbox or Stripe. Default: the sandbox while the sandbox is
    # on, Stripe otherwise. Stripe with the sandbox on is Stripe's test mode driven by the sandbox clock.
    gateway: Literal["sandbox", "stripe"] | None = None
    stripe_api_key: str = ""
    stripe_api_base: str = ""
    stripe_webhook_secret: str = ""
    smtp_url: str = ""
    smtp_from: str = "billing@example.com"
    cors_origins: list[str] = Field(default_factory=list)
    policy_dir: Path | None = None
    idempotency_ttl_hours: int = Field(default=24, ge=24)
    scheduler_enabled: bool = True
    scheduler_interval_seconds: float = Field(default=60.0, gt=0)
    # On SIGTERM/SIGINT the scheduled work claims nothing new and the running batch has this long (from the signal)
    # to finish before it is cut off (its claims then run out and another run repeats it with the same keys).
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    job_batch_size: int = Field(default=500, ge=1, le=10_000)
    rate_limit_writes_per_minute: int = Field(default=600, ge=0)  # per caller and replica; 0 turns it off
    log_level: str = "INFO"
    # /metrics reads the backlog gauges (app/health/backlog.py) from the database at most this often per process.
    backlog_refresh_seconds: float = Field(default=15.0, ge=0)
    # `auto`: plain lines on a terminal, one JSON object per line otherwise (what log collectors read).
    log_format: Literal["auto", "json", "text"] = "auto"
    # Ops console sessions (app/console/sessions.py): signed out after this long without a request, and in any
    # case this long after signing in (or when the pasted token expires, if sooner).
    console_session_idle_minutes: int = Field(default=30, ge=1)
    console_session_hours: int = Field(default=12, ge=1)
    # Connections kept open to PostgreSQL by one process; requests beyond it wait for one (no connection churn).
    db_pool_size: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if self.sandbox is None:
            self.sandbox = not self.stripe_api_key
        if self.gateway is None:
            self.gateway = "sandbox" if self.sandbox else "stripe"
        if self.gateway == "stripe" and not self.stripe_api_key:
            raise ValueError("BILLING_GATEWAY=stripe needs BILLING_STRIPE_API_KEY")
        if self.demo_plans is None:
            self.demo_plans = self.sandbox
        if not self.auth_secret and self.sandbox:
            self.auth_secret = DEV_AUTH_SECRET
        if not self.stripe_webhook_secret and self.sandbox:
            self.stripe_webhook_secret = SANDBOX_WEBHOOK_SECRET
        if not self.identity_key:
            self.identity_key = self.auth_secret
        return self

    def check_production(self) -> None:
        """Refuse to run outside the sandbox without the secrets production needs."""
        if not self.sandbox and (not self.auth_secret or self.auth_secret == DEV_AUTH_SECRET):
            raise RuntimeError("BILLING_AUTH_SECRET must be set to a real secret when BILLING_SANDBOX is off")
        if len(self.auth_secret) < 16:
            raise RuntimeError("BILLING_AUTH_SECRET must be at least 16 characters")
