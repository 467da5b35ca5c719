"""A TCP proxy in front of PostgreSQL that can lose a connection at the worst moment: when armed, the next
COMMIT a client sends is either passed on and its answer swallowed, or swallowed itself, and the client's
connection is then cut with no answer (as a network fault or a crashed pooler does). Runs its own event loop in a
thread, so the service under test (in a TestClient's thread, or the test's own loop) is unaware of it."""

from __future__ import annotations

import asyncio
import threading

from sqlalchemy.engine import make_url


class CuttingProxy:
    def __init__(self, server_url: str) -> None:
        url = make_url(server_url)
        self._target = (url.host or "127.0.0.1", url.port or 5432)
        self._server_url = url
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._armed: str | None = None  # "after" (COMMIT reaches the server) or "before" (it does not)
        self._lock = threading.Lock()
        self.cuts = 0
        self.port = 0

    def url(self) -> str:
        return self._server_url.set(host="127.0.0.1", port=self.port).render_as_string(False)

    def arm(self, when: str) -> None:
        """Cut the connection that sends the next COMMIT, `after` passing it on or `before`."""
        with self._lock:
            self._armed = when

    def _take_arm(self) -> str | None:
        with self._lock:
            when, self._armed = self._armed, None
            return when

    def __enter__(self) -> CuttingProxy:
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            self._server.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _client(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self._target)
        cut = asyncio.Event()

        async def upstream() -> None:
            while data := await client_r.read(65536):
                if b"COMMIT" in data and (when := self._take_arm()) is not None:
                    cut.set()  # nothing more reaches the client
                    self.cuts += 1
                    if when == "after":
                        server_w.write(data)
                        await server_w.drain()
                        await asyncio.sleep(0.2)  # the server commits; its answer is never passed on
                    return
                server_w.write(data)
                await server_w.drain()

        async def downstream() -> None:
            while data := await server_r.read(65536):
                if cut.is_set():
                    return
                client_w.write(data)
                await client_w.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for writer in (client_w, server_w):
                writer.transport.abort()  # a reset, no goodbye
