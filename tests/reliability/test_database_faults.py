"""Database faults under load (issue 14 item 14), on a throwaway PostgreSQL cluster of the test's own (the shared
server is never restarted): 16 clients make reads and idempotent writes (customer sign-ups, ops credits, each with
an Idempotency-Key) against a real `billing serve` process while (1) every connection the service holds is
terminated (`pg_terminate_backend`, as a failover or a pooler restart does), then (2) the server is restarted
with about 2.5 s down.

Checked: every request got an HTTP answer (no connection dropped); no 500; what could not reach the database was
503 `database_unavailable` with `Retry-After`; the service serves again within seconds of the database's return;
every write acknowledged 2xx is in the database exactly once; a client that got 503 and retried with its key
ends with exactly one effect.

The subtle case, a COMMIT sent and never answered, is also forced deterministically (a TCP proxy that cuts the
connection at the COMMIT, before or after it reaches the server): the client's retry with its key ends with
exactly one effect either way."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from app.cli import migrate
from tests.conftest import customer_headers, ops_headers
from tests.reliability.pgcluster import cluster_or_reason, wait_until_ready
from tests.reliability.support import server_errors, start_service
from tests.support.cutting_proxy import CuttingProxy

pytestmark = pytest.mark.postgres

CLIENTS = 16
DOWN_SECONDS = 2.5
BACK_WITHIN_SECONDS = 5.0  # the service serves again this soon after the database is back
GIVE_UP_SECONDS = 30.0  # one write's retries with its key end this soon (the whole test stays well under 2 min)


@pytest.fixture
def cluster(is_postgres: bool):
    if not is_postgres:
        pytest.skip("database faults are proven on PostgreSQL (BILLING_TEST_POSTGRES_URL)")
    made, reason = cluster_or_reason()
    if made is None:
        pytest.skip(f"cannot run a throwaway PostgreSQL here: {reason}")
    try:
        made.start()
        wait_until_ready(made)
        migrate(made.url)
        yield made
    finally:
        made.destroy()


def _sql(url: str, query: str, *args):
    import asyncpg

    async def run():
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


class Load:
    """The clients' shared record: every answer, every write's key and its final outcome."""

    def __init__(self, url: str, customers: list[dict]) -> None:
        self.url = url
        self.customers = customers
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.problems: list[str] = []  # answers that must never happen
        self.credits: dict[str, str] = {}  # key (also the credit's reason) -> final answer (see `write`)
        self.signups: dict[str, str] = {}  # external id -> final answer

    def note(self, what: str, response: httpx.Response, expected: set[int]) -> None:
        with self.lock:
            self.statuses[(what, response.status_code)] += 1
            if response.status_code == 503:
                body = response.json()
                if body.get("code") != "database_unavailable" or not response.headers.get("retry-after"):
                    self.problems.append(f"{what}: 503 without code/Retry-After: {response.text[:300]}")
            elif response.status_code not in expected:
                self.problems.append(f"{what}: {response.status_code} {response.text[:300]}")

    def send(
        self, http: httpx.Client, what: str, method: str, path: str, expected: set[int], **kwargs
    ) -> httpx.Response | None:
        try:
            response = http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            with self.lock:
                self.problems.append(f"{what}: no HTTP answer ({type(exc).__name__}: {exc})")
            return None
        self.note(what, response, expected)
        return response

    def write(self, http: httpx.Client, what: str, path: str, body: dict, headers: dict) -> tuple[str, str]:
        """POST with one Idempotency-Key until a final answer, retrying 503 (and 409 `idempotency_key_in_use`, the
        first attempt's key not yet settled) with the same key, as a client does. Returns the key and the final
        answer: "created" (201), "took effect" (409 `idempotency_response_lost`: its COMMIT's answer was lost), or
        what went wrong."""
        key = f"{what}-{uuid.uuid4().hex}"
        headers = {**headers, "Idempotency-Key": key}
        payload = {**body, "reason": key} if "reason" in body else body  # a credit names its key: found by it
        deadline = time.monotonic() + GIVE_UP_SECONDS
        answers: list[str] = []
        while time.monotonic() < deadline:
            response = self.send(http, what, "POST", path, {201, 409}, json=payload, headers=headers)
            if response is None:
                return key, "no HTTP answer"
            code = response.json().get("code", "") if response.status_code >= 400 else ""
            answers.append(f"{response.status_code} {code}")
            if response.status_code == 201:
                return key, "created"
            if code == "idempotency_response_lost":
                return key, "took effect"
            if response.status_code != 503 and code != "idempotency_key_in_use":
                return key, f"unexpected: {answers}"
            time.sleep(0.25)  # Retry-After says 1 s; shorter keeps the test quick and the load on
        return key, f"gave up: {answers[-5:]}"

    def client(self, seed: int) -> None:
        rnd = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self.stop.is_set():
                customer = rnd.choice(self.customers)
                roll = rnd.random()
                if roll < 0.5:
                    path = rnd.choice([f"/v1/customers/{customer['id']}", f"/v1/customers/{customer['id']}/credits"])
                    self.send(http, "read", "GET", path, {200}, headers=ops_headers())
                elif roll < 0.8:
                    key, outcome = self.write(
                        http,
                        "credit",
                        f"/v1/customers/{customer['id']}/credits",
                        {"amount": 100, "currency": "usd", "reason": ""},
                        ops_headers(),
                    )
                    with self.lock:
                        self.credits[key] = outcome
                else:
                    sub = f"signup-{uuid.uuid4().hex[:12]}"
                    _key, outcome = self.write(
                        http,
                        "signup",
                        "/v1/customers",
                        {"email": f"{sub}@example.com", "name": "Fault Test", "country": "US"},
                        customer_headers(sub),
                    )
                    with self.lock:
                        self.signups[sub] = outcome


def _serves(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_database_faults_under_load_answer_503_lose_nothing_and_double_nothing(cluster, tmp_path: Path) -> None:
    log_file = tmp_path / "service.log"
    service = start_service(cluster.url, log_file=log_file)
    try:
        ops = httpx.Client(base_url=service.url, timeout=30, headers=ops_headers())
        customers = []
        for n in range(8):
            sub = f"fault-{n}"
            r = ops.post(
                "/v1/customers",
                json={"email": f"{sub}@example.com", "name": "F", "country": "US"},
                headers=customer_headers(sub),
            )
            assert r.status_code == 201, r.text
            customers.append(r.json())
        load = Load(service.url, customers)
        threads = [threading.Thread(target=load.client, args=(n,), daemon=True) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.5)
            # (1) Every connection of the service cut at once.
            terminated = _sql(
                cluster.url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'",
            )
            assert terminated, "the service held no connection to terminate"
            time.sleep(2.0)
            # (2) The server restarted, down for about 2.5 s.
            cluster.stop()
            time.sleep(DOWN_SECONDS)
            cluster.start()
            back = time.monotonic()
            while not _serves(service.url):
                assert time.monotonic() - back < BACK_WITHIN_SECONDS, "the service did not serve again in time"
                time.sleep(0.1)
            probe = ops.get(f"/v1/customers/{customers[0]['id']}")
            assert probe.status_code == 200, probe.text
            time.sleep(2.0)
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(timeout=GIVE_UP_SECONDS + 10)
        ops.close()
    finally:
        service.stop()

    assert not load.problems, "\n".join(load.problems[:30])
    assert ("read", 503) in load.statuses or ("credit", 503) in load.statuses or ("signup", 503) in load.statuses, (
        f"the faults were not felt: {load.statuses}"
    )
    unfinished = {k: v for k, v in {**load.credits, **load.signups}.items() if v not in ("created", "took effect")}
    assert not unfinished, f"writes with no final answer: {unfinished}"
    assert load.credits and load.signups, "the clients made no writes"

    # Every write acknowledged, or retried with its key until acknowledged, is there exactly once; nothing else is.
    rows = _sql(
        cluster.url, "SELECT reason, count(*) AS n FROM credit_entries WHERE reason LIKE 'credit-%' GROUP BY reason"
    )
    counts = {r["reason"]: r["n"] for r in rows}
    assert {k: counts.get(k, 0) for k in load.credits if counts.get(k, 0) != 1} == {}, "credits not exactly once"
    assert set(counts) == set(load.credits), "credits in the database that no client was told of"
    rows = _sql(cluster.url, "SELECT external_id FROM customers WHERE external_id LIKE 'signup-%'")
    assert sorted(r["external_id"] for r in rows) == sorted(load.signups), "sign-ups lost, or made without an answer"
    errors = server_errors(log_file)
    assert not errors, "\n".join(errors[:20])


@pytest.mark.parametrize("cut", ["after", "before"])
def test_a_write_whose_commit_answer_is_lost_has_one_effect_when_retried_with_its_key(
    clean_db: str, is_postgres: bool, cut: str
) -> None:
    """The subtle case of issue 14 item 14: the connection is lost between a write's COMMIT and its answer, the
    COMMIT having reached the server (`after`: it committed) or not (`before`). The client gets 503 and retries
    with its Idempotency-Key: once the database answers again the key is settled from the witness its transaction
    wrote, and the retry either runs the write (it had not committed: 201) or replays 409
    `idempotency_response_lost` (it had): exactly one credit either way, never two."""
    if not is_postgres:
        pytest.skip("a connection cut mid-COMMIT is proven on PostgreSQL")
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.conftest import START, make_customer, make_settings

    with (
        CuttingProxy(clean_db) as proxy,
        TestClient(create_app(make_settings(proxy.url())), raise_server_exceptions=False) as client,
    ):
        client.post("/v1/sandbox/clock", json={"now": START}, headers=ops_headers())
        customer = make_customer(client, "lost-commit")
        path = f"/v1/customers/{customer['id']}/credits"
        grant = {
            "json": {"amount": 500, "currency": "usd", "reason": f"lost-{cut}"},
            "headers": {**ops_headers(), "Idempotency-Key": f"lost-commit-{cut}"},
        }
        proxy.arm(cut)
        first = client.post(path, **grant)
        assert proxy.cuts == 1
        assert first.status_code == 503, first.text
        assert first.json()["code"] == "database_unavailable" and first.headers["retry-after"] == "1"
        deadline = time.monotonic() + 10
        while (retry := client.post(path, **grant)).status_code == 409 and retry.json()[
            "code"
        ] == "idempotency_key_in_use":
            assert time.monotonic() < deadline, "the key was never settled"
            time.sleep(0.1)
        if cut == "after":
            assert (retry.status_code, retry.json()["code"]) == (409, "idempotency_response_lost"), retry.text
        else:
            assert retry.status_code == 201, retry.text
        again = client.post(path, **grant)
        assert (again.status_code, again.content) == (retry.status_code, retry.content)
        assert again.headers["idempotent-replayed"] == "true"
        credits = client.get(path, headers=ops_headers()).json()["data"]
        assert [c["reason"] for c in credits] == [f"lost-{cut}"]
