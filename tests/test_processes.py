"""tests/support/processes.py: the one server-process starter of the tests and bench/run.py."""

import sys
import textwrap

import pytest

from tests.support.processes import answers, free_port, start_server

# A server as the starter expects one: `--host H --port P`, answering /healthz.
SERVER = textwrap.dedent(
    """
    import argparse, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    parser = argparse.ArgumentParser()
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    print("starting", file=sys.stderr, flush=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    HTTPServer((args.host, args.port), Handler).serve_forever()
    """
)


def test_a_free_port_is_free():
    port = free_port()
    assert 0 < port < 65536
    assert not answers(f"http://127.0.0.1:{port}/healthz", timeout=1)


def test_started_once_healthy_and_stopped(tmp_path):
    server = start_server([sys.executable, "-c", SERVER], {}, name="tiny", log_path=tmp_path / "tiny.log")
    try:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert answers(f"{server.url}/healthz")
        assert server.cpu_seconds() >= 0
        assert server.peak_rss_mb() > 0
        assert "starting" in server.log_tail()
    finally:
        server.stop()
    assert server.exited()
    assert server.process.returncode == -15  # SIGTERM


def test_a_server_that_exits_first_is_an_error_with_its_stderr():
    with pytest.raises(RuntimeError, match=r"exited with 3: .*no database here"):
        start_server(
            [sys.executable, "-c", "import sys; print('no database here', file=sys.stderr); sys.exit(3)"],
            {},
            name="broken",
        )


def test_a_server_never_ready_is_killed_and_an_error():
    with pytest.raises(RuntimeError, match="did not become ready in 1 s"):
        start_server([sys.executable, "-c", "import time; time.sleep(60)"], {}, name="mute", seconds=1)
