"""A latency injector: a loopback TCP proxy that holds each request for a fixed delay before passing it
on, as the network between two providers would (30 ms by default, a cross-provider hop).

A request is what a client sends after the server last answered on that connection (an interim
``100 Continue`` is no answer): its first bytes wait ``delay_s``, the rest of it (a large body) follows
without more delay. An answer goes back at once. So one request costs one delay, as a round trip
would, and a client that keeps many requests in flight (a pool) overlaps them, as it would on a real
network. ``bench/s3sync.py`` and ``bench/webhooks.py`` put it in front of the S3 endpoint; the tests'
stand does not use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
from typing import Any

import uvloop


class LatencyProxy:
    """Listen on 127.0.0.1 (a free port, or ``listen_port``) and forward to 127.0.0.1:``upstream_port``.

    Runs in a process of its own, so that the client it measures (threads busy hashing and copying)
    cannot starve it of the GIL and add delays of its own. Use as a context manager, or :meth:`start` /
    :meth:`stop`; :attr:`port` is where to connect, :attr:`requests` how many requests were held.
    """

    def __init__(self, upstream_port: int, delay_s: float = 0.030, listen_port: int = 0) -> None:
        self.upstream_port, self.delay_s, self.listen_port = upstream_port, delay_s, listen_port
        self.port = 0
        self._count: Any = None
        self._proc: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> int:
        return int(self._count.value) if self._count is not None else 0

    def start(self) -> LatencyProxy:
        ctx = multiprocessing.get_context("fork")
        self._count, port, ready = ctx.Value("q", 0), ctx.Value("i", 0), ctx.Event()
        self._proc = ctx.Process(
            target=_serve,
            args=(self.upstream_port, self.delay_s, self.listen_port, port, ready, self._count),
            name="latency-proxy",
            daemon=True,
        )
        self._proc.start()
        if not ready.wait(10) or not port.value:
            self.stop()
            raise RuntimeError(f"the latency proxy could not listen on 127.0.0.1:{self.listen_port}")
        self.port = port.value
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(10)

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _serve(upstream_port: int, delay_s: float, listen_port: int, port: Any, ready: Any, count: Any) -> None:
    """The proxy's process: serve until terminated."""
    # Forked from its starter, it holds the starter's whole heap (boto3's models and the like): a full
    # collection would scan it all, holding every request for a fifth of a second. Nothing of it is garbage.
    gc.freeze()
    # Each connection's task, held until it ends. The streams hold their readers only weakly, and a client's
    # protocol lets go of its task once the client has closed: a task still relaying the server's last bytes
    # (or waiting for it to close) was then collected midway ("Task was destroyed but it is pending").
    handlers: set[asyncio.Task] = set()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            handlers.add(task)
            task.add_done_callback(handlers.discard)
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_w.close()
            return
        new_request = [True]

        async def upstream() -> None:
            while data := await client_r.read(1 << 16):
                if new_request[0]:
                    new_request[0] = False
                    with count.get_lock():
                        count.value += 1
                    await asyncio.sleep(delay_s)
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
        except OSError:
            pass
        finally:
            for writer in (server_w, client_w):
                with contextlib.suppress(Exception):
                    writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
        port.value = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await server.serve_forever()

    try:
        # uvloop: the network this stands for costs the measured processes no CPU; on the stand's 2 shared cores
        # the injector's own should be as small as it can be (under the webhook bench's load: 5–6% of a core,
        # 9% with asyncio's loop).
        uvloop.run(main())
    finally:
        ready.set()  # a failure to listen must not leave start() waiting
