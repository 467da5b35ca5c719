"""The `billing` console command: `billing token` mints a token the service accepts."""

from __future__ import annotations

import pytest

from app.auth import verify_token
from app.cli import main
from app.errors import Unauthenticated

SECRET = "cli-test-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    for name in ("BILLING_SANDBOX", "BILLING_STRIPE_API_KEY", "BILLING_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BILLING_AUTH_SECRET", SECRET)
    monkeypatch.setenv("BILLING_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")


@pytest.mark.parametrize("role", ["ops", "customer"])
def test_token_prints_a_token_the_service_accepts(capsys: pytest.CaptureFixture[str], role: str) -> None:
    assert main(["token", "--sub", "x", "--role", role]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed and "\n" not in printed
    principal = verify_token(SECRET, f"Bearer {printed}")
    assert (principal.sub, principal.role) == ("x", role)


def test_the_token_is_signed_with_the_configured_secret(capsys: pytest.CaptureFixture[str]) -> None:
    main(["token", "--sub", "x", "--role", "ops"])
    printed = capsys.readouterr().out.strip()
    with pytest.raises(Unauthenticated):
        verify_token("some-other-secret-0123456789abcdef", f"Bearer {printed}")


def test_a_token_with_negative_hours_is_already_expired(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--sub", "x", "--role", "ops", "--hours", "-1"]) == 0
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(SECRET, f"Bearer {capsys.readouterr().out.strip()}")


@pytest.mark.parametrize("argv", [["token", "--sub", "x", "--role", "admin"], ["token", "--sub", "x"],
                                  ["token", "--role", "ops"]], ids=["bad_role", "no_role", "no_sub"])
def test_token_with_invalid_arguments_exits_non_zero(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code not in (0, None)
    captured = capsys.readouterr()
    assert captured.out == ""  # no token printed
    assert captured.err
