"""The project's own documentation stays complete and self-contained (issue 21):

- every policy rule id the code cites (`policies/*.py`, `policies/versions/*.toml`) has its section in
  docs/policy.md;
- every route the application serves (method and path, the OpenAPI viewers aside) is in docs/api.md;
- every `BILLING_*` setting (app/config.py) is in docs/operations.md;
- every relative link in README.md, docs/*.md (and every other markdown file) points at a file of the repository;
- no markdown file of the repository links to, or names, anything outside it (`../shared/...`): a clone has
  nothing there.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# A rule id: one of the policy's letters and a rule number (B1, T4, D3 ...); "C0" (the C0 control characters) is
# not one, no rule is numbered 0.
RULE_ID = re.compile(r"(?<![\w-])([BCDIPRT][1-9])(?![\w-])")
# [text](target "title"), [label]: target, href="target"
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
HREF = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""")
OUTSIDE = re.compile(r"(?:\.\./)+shared\b|/work/shared\b")
SKIPPED_DIRS = {".git", ".venv", "venv", "node_modules", "build", "dist", ".pytest_cache", ".hypothesis"}


def cited_rule_ids() -> set[str]:
    files = sorted((ROOT / "policies").glob("*.py")) + sorted((ROOT / "policies" / "versions").glob("*.toml"))
    return {match for path in files for match in RULE_ID.findall(path.read_text(encoding="utf-8"))}


def documented_rule_ids() -> set[str]:
    """The ids that head a section of docs/policy.md (a markdown heading naming the id)."""
    text = (DOCS / "policy.md").read_text(encoding="utf-8")
    return {match for line in text.splitlines() if line.startswith("#") for match in RULE_ID.findall(line)}


def served_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the application serves in the sandbox (which mounts every router), HEAD and
    the OpenAPI document and its viewers aside. Building the app opens no database connection."""
    from fastapi.routing import APIRoute
    from starlette.routing import Route

    from app.main import create_app

    app = create_app(make_settings("sqlite:///unused-never-opened.db", sandbox=True), run_scheduler=False)
    viewers = {app.openapi_url, "/docs", "/redoc", app.swagger_ui_oauth2_redirect_url}  # app/openapi.py install_docs
    try:  # FastAPI versions that keep included routers as branches
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older versions flatten included routes into app.routes
        contexts = [(r, r.path, r.methods) for r in app.routes]
    else:
        contexts = [(rc.original_route, rc.path, rc.methods) for rc in iter_route_contexts(app.routes)]
    return {
        (method, path)
        for route, path, methods in contexts
        if isinstance(route, (APIRoute, Route)) and path not in viewers
        for method in methods or ()
        if method != "HEAD"
    }


def markdown_files() -> list[Path]:
    found = []
    for path in sorted(ROOT.rglob("*.md")):
        parts = path.relative_to(ROOT).parts
        if not any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in parts):
            found.append(path)
    return found


def link_targets(text: str) -> list[str]:
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text) + HREF.findall(text)


def local_target(source: Path, target: str) -> Path | None:
    """The file a relative link points at, or None for a link to the web, a mail address or an anchor."""
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not parsed.path:
        return None
    path = unquote(parsed.path)
    return (ROOT / path.lstrip("/")) if path.startswith("/") else (source.parent / path)


def inside_repository(path: Path) -> bool:
    return path.resolve() == ROOT or ROOT in path.resolve().parents


def test_rule_ids_cited_by_the_policy_code_each_have_a_section_in_docs_policy_md() -> None:
    cited = cited_rule_ids()
    assert {"B1", "T4", "R2", "D4"} <= cited, cited  # the scan itself works
    missing = sorted(cited - documented_rule_ids())
    assert not missing, f"docs/policy.md has no section (heading) for the rule ids {missing} cited in policies/"


def test_every_route_the_app_serves_is_in_docs_api_md() -> None:
    routes = served_routes()
    assert ("GET", "/v1/plans") in routes and ("POST", "/v1/sandbox/run-due") in routes  # the walk itself works
    assert not any(path in ("/docs", "/openapi.json") for _method, path in routes)
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    missing = sorted(f"{method} {path}" for method, path in routes if f"{method} {path}" not in text)
    assert not missing, f"docs/api.md does not describe these routes (write them as 'METHOD /path'): {missing}"


def test_every_setting_of_the_service_is_in_docs_operations_md() -> None:
    from app.config import Settings

    names = {f"BILLING_{name.upper()}" for name in Settings.model_fields}
    assert {"BILLING_DATABASE_URL", "BILLING_IDENTITY_KEY"} <= names  # the scan itself works
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    missing = sorted(name for name in names if f"`{name}`" not in text)
    assert not missing, f"docs/operations.md does not describe the settings {missing}"


LINKED = markdown_files()  # README.md, docs/*.md, and every other markdown file of the repository


@pytest.mark.parametrize("source", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_in_the_repository(source: Path) -> None:
    broken = []
    for target in link_targets(source.read_text(encoding="utf-8")):
        path = local_target(source, target)
        if path is not None and not (inside_repository(path) and path.exists()):
            broken.append(target)
    assert not broken, f"{source.relative_to(ROOT)} links to files the repository does not have: {broken}"


def test_the_docs_exist_and_link_checks_cover_them() -> None:
    names = {p.name for p in DOCS.glob("*.md")}
    assert {"policy.md", "api.md", "operations.md"} <= names
    sample = 'See [a](docs/api.md "title") and [b][ref].\n\n[ref]: ../x.md\n<a href="y.md">y</a>\n'
    assert link_targets(sample) == ["docs/api.md", "../x.md", "y.md"]
    assert local_target(ROOT / "README.md", "https://example.com/x") is None
    assert not inside_repository(local_target(ROOT / "README.md", "../shared/spec/policy.md"))


@pytest.mark.parametrize("source", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_markdown_file_points_outside_the_repository(source: Path) -> None:
    text = source.read_text(encoding="utf-8")
    outside = [
        t for t in link_targets(text) if (path := local_target(source, t)) is not None and not inside_repository(path)
    ]
    outside += OUTSIDE.findall(text)
    assert not outside, f"{source.relative_to(ROOT)} points outside the repository: {outside}"


def test_every_problem_code_the_service_sends_is_in_docs_api_md() -> None:
    from app.errors import ERROR_TABLE

    text = (DOCS / "api.md").read_text(encoding="utf-8")
    missing = sorted(code for code in ERROR_TABLE if f"`{code}`" not in text)
    assert not missing, f"docs/api.md does not describe the problem codes {missing}"
