"""The container image, proven: the Dockerfile builds, and the image migrates a fresh PostgreSQL database, serves,
answers /healthz, takes a purchase, and stops cleanly on SIGTERM (`docker stop`).

No image registry is reachable here, so the image's base (the Dockerfile's BASE_IMAGE argument) is built locally
from Debian's packages with debootstrap: a minimal bookworm with python3 and its venv module. That base trusts the
same certificate authorities as this machine (its bundle is copied in), so that pip inside the build reaches the
package index the way the machine does. Built once and kept as BASE_TAG; delete that image to rebuild it.

Runs in the PostgreSQL pass of tests/run.sh (BILLING_TEST_POSTGRES_URL set). Skipped, with the reason, where no
Docker daemon can run: no `docker`/`dockerd` (tests/system-packages.sh installs docker.io and debootstrap), or a
daemon that does not start (not root, no cgroups).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET, customer_headers, fresh_database, ops_headers
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
BASE_TAG = "billing-test-base:bookworm"
IMAGE_TAG = "billing-test:latest"
DEBIAN_MIRROR = os.environ.get("BILLING_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

pytestmark = [
    pytest.mark.skipif(
        not os.environ.get("BILLING_TEST_POSTGRES_URL"),
        reason="the image is tested once, in the PostgreSQL pass (BILLING_TEST_POSTGRES_URL)",
    ),
    pytest.mark.timeout(1200),
]


def run(*argv: str, timeout: float = 900, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv[:4])} ... exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def _daemon_answers() -> bool:
    return run("docker", "info", timeout=30, check=False).returncode == 0


@pytest.fixture(scope="module")
def docker() -> Iterator[None]:
    """A Docker daemon: the running one, or one this module starts (and stops) itself."""
    if not shutil.which("docker"):
        pytest.skip("no docker client (Debian's docker.io; tests/system-packages.sh installs it)")
    if _daemon_answers():
        yield
        return
    if not shutil.which("dockerd") or os.geteuid() != 0:
        pytest.skip("no Docker daemon running, and none can be started here (needs dockerd and root)")
    log = tempfile.NamedTemporaryFile(prefix="dockerd-", suffix=".log", delete=False)  # noqa: SIM115 - dockerd writes it until the fixture ends
    daemon = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _daemon_answers():
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"dockerd did not start: {Path(log.name).read_text()[-1500:]}")
            time.sleep(1)
        yield
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        os.unlink(log.name)


@pytest.fixture(scope="module")
def base_image(docker: None) -> str:
    """BASE_TAG: Debian bookworm (minbase) with python3 and python3-venv, from debootstrap."""
    if run("docker", "image", "inspect", BASE_TAG, check=False).returncode == 0:
        return BASE_TAG
    if not shutil.which("debootstrap"):
        pytest.skip("no debootstrap (tests/system-packages.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="billing-rootfs-") as rootfs:
        run(
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            rootfs,
            DEBIAN_MIRROR,
            timeout=1200,
        )
        if CA_BUNDLE.exists():  # the same trust as this machine (a proxy's authority included)
            shutil.copyfile(CA_BUNDLE, Path(rootfs) / "etc/ssl/certs/ca-certificates.crt")
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "-c", f"ENV PIP_CERT={CA_BUNDLE} SSL_CERT_FILE={CA_BUNDLE}", "-", BASE_TAG],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=600,
        )
        tar.stdout.close()
        tar.wait()
        assert imported.returncode == 0, imported.stderr
    return BASE_TAG


@pytest.fixture(scope="module")
def image(base_image: str) -> str:
    run("docker", "build", "--quiet", "--build-arg", f"BASE_IMAGE={base_image}", "--tag", IMAGE_TAG, str(ROOT))
    return IMAGE_TAG


@pytest.fixture
def database() -> Iterator[str]:
    with fresh_database(os.environ["BILLING_TEST_POSTGRES_URL"], "billing_image") as url:
        yield url


def test_the_image_migrates_serves_takes_a_purchase_and_stops_on_sigterm(image: str, database: str) -> None:
    context = run("docker", "run", "--rm", "--entrypoint", "sh", image, "-c", "ls -A /srv/billing").stdout.split()
    assert ".venv" not in context and not any(name.endswith(".db") for name in context), context  # .dockerignore
    assert run("docker", "run", "--rm", image, "id", "-u").stdout.strip() == "10001"  # not root

    port = free_port()
    name = f"billing-image-test-{uuid.uuid4().hex[:8]}"
    # The image's own command (migrate, then serve), on a port of the host's network, where PostgreSQL listens.
    container = run(
        "docker",
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        "-e",
        f"BILLING_DATABASE_URL={database}",
        "-e",
        f"BILLING_AUTH_SECRET={SECRET}",
        "-e",
        "BILLING_SANDBOX=true",
        "-e",
        "BILLING_SCHEDULER_ENABLED=false",
        image,
        "sh",
        "-c",
        f"billing migrate && exec billing serve --host 127.0.0.1 --port {port}",
    ).stdout.strip()
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            state = run("docker", "inspect", "-f", "{{.State.Running}}", container).stdout.strip()
            if state != "true" or time.monotonic() > deadline:
                raise AssertionError(
                    f"the container did not become healthy:\n"
                    f"{run('docker', 'logs', container, check=False).stderr[-3000:]}"
                )
            time.sleep(0.5)
        with httpx.Client(base_url=base, timeout=30) as api:
            assert api.get("/readyz").status_code == 200
            plans = api.get("/v1/plans").json()["data"]
            assert {p["code"] for p in plans} >= {"basic-monthly"}, plans  # demo plans in the sandbox
            me = customer_headers("image-user-1")
            customer = api.post(
                "/v1/customers", headers=me, json={"email": "image@example.com", "name": "Image Test", "country": "DE"}
            )
            assert customer.status_code == 201, customer.text
            bought = api.post(
                "/v1/subscriptions",
                headers={**me, "Idempotency-Key": "image-buy-1"},
                json={"customer_id": customer.json()["id"], "plan": "basic-monthly", "payment_method": "pm_card_visa"},
            )
            assert bought.status_code == 201 and bought.json()["status"] == "active", bought.text
            payments = api.get(f"/v1/customers/{customer.json()['id']}/payments", headers=ops_headers()).json()
            assert [p["status"] for p in payments["data"]] == ["succeeded"]
        started = time.monotonic()
        run("docker", "stop", "--time", "30", container)
        assert time.monotonic() - started < 25  # SIGTERM ended it; docker did not have to kill it
        assert run("docker", "inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip() == "0"
    finally:
        run("docker", "rm", "--force", container, check=False)
