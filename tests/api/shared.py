"""A faster `client` for test modules that need no special settings: one app per module instead of one per test.

FastAPI builds each app's route table lazily, on its first requests, and that costs more than most tests do. A
module that imports `client` from here gets the same guarantees as tests/conftest.py's `client` (an empty, migrated
database and the sandbox clock at START before each test, the default test settings), with the app reused across
the module's tests. The app keeps nothing between requests but its database (emptied per test), the client's
cookies (cleared per test) and its in-memory metrics, so a test that counts metrics compares two scrapes.

    from tests.api import shared

    client = shared.client  # fixtures: one app per module
    module_client = shared.module_client
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import START, make_settings, ops_headers


@pytest.fixture(scope="module")
def module_client(database_url: str):
    """One app, with the default test settings, for the whole module."""
    from app.main import create_app

    with TestClient(create_app(make_settings(database_url)), raise_server_exceptions=False) as shared:
        yield shared


@pytest.fixture
def client(module_client, clean_db: str):
    """The module's app, on an emptied database with the sandbox clock at START (like tests/conftest.py's)."""
    module_client.cookies.clear()  # e.g. an ops console session left by the previous test
    response = module_client.post("/v1/sandbox/clock", json={"now": START}, headers=ops_headers())
    assert response.status_code == 200, response.text
    return module_client
