"""A latency injector: a loopback TCP proxy that holds each request for a fixed delay before passing it
on, as the network between two providers would (30 ms by default, a cross-provider hop).

A request is what a client sends after the server last answered on that connection (an interim
``100 Continue`` is no answer): its first bytes wait ``delay_s``, the rest of it (a large body) follows
without more delay. An answer goes back at once. So one request costs one delay, as a round trip would, and a client that keeps many requests in
flight (a pool) overlaps them, as it would on a real network. ``bench/s3sync.py`` puts it in front of
the S3 endpoint; the tests' stand does not use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any


class LatencyProxy:
    """Listen on 127.0.0.1 (a free port, or ``listen_port``) and forward to 127.0.0.1:``upstream_port``.

    Use as a context manager, or :meth:`start` / :meth:`stop`; :attr:`port` is where to connect,
    :attr:`requests` how many requests were held.
    """

    def __init__(self, upstream_port: int, delay_s: float = 0.030, listen_port: int = 0) -> None:
        self.upstream_port, self.delay_s, self.listen_port = upstream_port, delay_s, listen_port
        self.port = 0
        self.requests = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LatencyProxy:
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._server = self._loop.run_until_complete(
                    asyncio.start_server(self._handle, "127.0.0.1", self.listen_port)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as err:  # noqa: BLE001 - handed to the caller of start()
                failed.append(err)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="latency-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failed:
            raise failed[0]
        return self

    def stop(self) -> None:
        if self._loop and self._server:

            async def close() -> None:
                self._server.close()
                while tasks := [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)

            with contextlib.suppress(RuntimeError, TimeoutError):
                asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)
        if self._loop and not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        new_request = [True]

        async def upstream() -> None:
            while data := await client_r.read(1 << 16):
                if new_request[0]:
                    new_request[0] = False
                    self.requests += 1
                    await asyncio.sleep(self.delay_s)
                server_w.write(data)
                await server_w.drain()
            with contextlib.suppress(OSError):
                server_w.write_eof()

        async def downstream() -> None:
            while data := await server_r.read(1 << 16):
                if not data.startswith(b"HTTP/1.1 100 "):  # "go on" (Expect: 100-continue) ends no request
                    new_request[0] = True
                client_w.write(data)
                await client_w.drain()
            with contextlib.suppress(OSError):
                client_w.write_eof()

        try:
            await asyncio.gather(upstream(), downstream())
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for writer in (server_w, client_w):
                with contextlib.suppress(Exception):
                    writer.close()
