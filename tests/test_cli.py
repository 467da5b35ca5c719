"""The `billing` console command: `billing token` mints a token the service accepts; first-run mistakes end in one
line that says what to do; every option is described with its default."""

from __future__ import annotations

import argparse
import io
import logging
import os
import socket
import sqlite3
import sys
from pathlib import Path

import pytest

from app.auth import verify_token
from app.cli import main, migrate, parser, startup_banner
from app.config import Settings
from app.errors import Unauthenticated
from app.health.observability import JsonFormatter, TextFormatter, log_format_for
from tests.support.servers import free_port

SECRET = "cli-test-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
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


@pytest.mark.parametrize(
    "argv",
    [["token", "--sub", "x", "--role", "admin"], ["token", "--sub", "x"], ["token", "--role", "ops"]],
    ids=["bad_role", "no_role", "no_sub"],
)
def test_token_with_invalid_arguments_exits_non_zero(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code not in (0, None)
    captured = capsys.readouterr()
    assert captured.out == ""  # no token printed
    assert captured.err


# --- first run: one line that says what to do, never a traceback ------------------------------------------------


def _serve(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["serve", *argv])
    err = capsys.readouterr().err
    return code, err


def test_serve_before_migrate_says_to_migrate(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _serve(["--port", str(free_port())], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("billing: ") and "run `billing migrate` first" in err, err


def test_serve_on_an_empty_database_file_says_to_migrate(capsys, tmp_path, monkeypatch) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    monkeypatch.setenv("BILLING_DATABASE_URL", f"sqlite:///{empty}")
    code, err = _serve(["--port", str(free_port())], capsys)
    assert code == 2 and err == "billing: the database has no schema yet: run `billing migrate` first\n"


def test_serve_on_an_older_schema_says_to_migrate(capsys, tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate(url, "0005_audit_erasure")
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    code, err = _serve(["--port", str(free_port())], capsys)
    assert code == 2 and err.startswith("billing: the database schema is at 0005_audit_erasure, this version needs ")
    assert err.count("\n") == 1


def test_serve_without_a_reachable_database_says_so(capsys, monkeypatch) -> None:
    monkeypatch.setenv("BILLING_DATABASE_URL", f"postgresql://nobody@127.0.0.1:{free_port()}/nothing")
    code, err = _serve(["--port", str(free_port())], capsys)
    assert code == 2 and err.startswith("billing: cannot reach the database postgresql://nobody@127.0.0.1:")
    assert err.count("\n") == 1


def test_serve_outside_the_sandbox_without_a_secret_names_the_setting(capsys, monkeypatch) -> None:
    monkeypatch.delenv("BILLING_AUTH_SECRET")
    monkeypatch.setenv("BILLING_SANDBOX", "false")
    monkeypatch.setenv("BILLING_STRIPE_API_KEY", "sk_test_123")
    code, err = _serve(["--port", str(free_port())], capsys)
    assert code == 2 and err.startswith("billing: BILLING_AUTH_SECRET must be set") and err.count("\n") == 1


def test_serve_on_a_port_in_use_says_so(capsys, monkeypatch) -> None:
    migrate(os.environ["BILLING_DATABASE_URL"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = _serve(["--port", str(port)], capsys)
    assert code == 2
    assert err == (
        f"billing: 127.0.0.1:{port} is already in use (another `billing serve`?): stop it, or choose "
        f"another port with --port\n"
    )


def test_the_startup_banner_says_where_everything_is_and_how_to_get_a_token(monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(Path.cwd() / ".venv" / "bin" / "billing"), "serve"])
    banner = startup_banner(Settings(), "0.0.0.0", 8123)
    for line in (
        "http://127.0.0.1:8123/docs",
        "http://127.0.0.1:8123/ops",
        "http://127.0.0.1:8123/v1/plans",
        ".venv/bin/billing token --sub ops-1 --role ops",
        "the sandbox clock stands still",
    ):
        assert line in banner, banner
    assert "\x1b" not in banner


def test_logs_are_json_for_collectors_and_plain_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert log_format_for("auto", io.StringIO()) == "json"
    assert log_format_for("auto", Terminal()) == "text"
    assert log_format_for("json", Terminal()) == "json"
    record = logging.LogRecord("uvicorn.error", logging.INFO, "", 0, "Started %d", (1,), None)
    record.color_message = "Started \x1b[36m%d\x1b[0m"
    for formatter in (JsonFormatter(), TextFormatter()):
        assert "\x1b" not in formatter.format(record)


@pytest.mark.parametrize("command", ["migrate", "serve", "token", "refund", "credit", "suspend", "replay-events"])
def test_every_option_is_described_with_its_default(command: str) -> None:
    subparsers = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    sub = subparsers.choices[command]
    shown = " ".join(sub.format_help().split())
    for action in sub._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{command} {action.option_strings} has no description"
        if action.default is not None and not action.required:
            assert f"(default: {action.default})" in shown, (command, action.option_strings)
