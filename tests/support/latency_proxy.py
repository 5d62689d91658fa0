"""A loopback TCP proxy that adds a fixed one-way delay, to imitate a far-away host.

``tc netem`` is not available on the CI kernel, so benchmarks put this proxy in
front of the test sshd: every chunk read from either side is written to the
other side ``delay`` seconds after it arrived.  One round trip through the
proxy therefore costs at least ``2 * delay`` (50 ms at the default 0.025 s).

Each direction of a connection has its own queue of ``(due_time, chunk)``:
the reader keeps reading while earlier chunks wait, and the writer sends each
chunk at its own arrival time + delay, so the delay adds latency without
capping throughput (no sleep-per-chunk serialisation), and the order of bytes
in each direction is kept.  EOF from one side is passed on (half-close) after
the same delay.  It only listens on 127.0.0.1.

Library use::

    proxy = LatencyProxy(target=("127.0.0.1", sshd_port), delay=0.025).start()
    ... connect to 127.0.0.1:proxy.port ...
    proxy.stop()

Command line (prints the port, runs until killed)::

    python bench/latency_proxy.py --target 127.0.0.1:PORT --delay 0.025 --port 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import threading

__all__ = ["LatencyProxy"]

LISTEN_HOST = "127.0.0.1"
CHUNK = 64 * 1024
# Per-direction buffer limit: the reader stops reading (TCP back-pressure)
# while this many chunks wait to be delivered.
MAX_QUEUED_CHUNKS = 512


class LatencyProxy:
    """Delay every chunk by ``delay`` seconds in both directions.

    ``start()`` binds (so ``.port`` is known when it returns) and serves in a
    background thread with its own asyncio loop; ``stop()`` closes the
    listener and every open connection and joins the thread.  Also a context
    manager.
    """

    def __init__(self, listen_port: int = 0, target: tuple[str, int] = ("127.0.0.1", 22),
                 delay: float = 0.025):
        if delay < 0:
            raise ValueError("delay must be >= 0")
        self.listen_port = listen_port
        self.target = (target[0], int(target[1]))
        self.delay = float(delay)
        self.port: int | None = None
        self.connections = 0          # accepted so far
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ----------------------------------------------------------- public API
    def start(self) -> "LatencyProxy":
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LISTEN_HOST, self.listen_port))
        sock.listen(128)
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._thread_main, name=f"latency-proxy:{self.port}",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(5)
        if self._error is not None:
            raise RuntimeError("latency proxy failed to start") from self._error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if thread is None:
            return
        if loop is not None and loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._thread = None
        self._loop = None

    def __enter__(self) -> "LatencyProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------- internals
    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, sock=self._sock, limit=CHUNK))
        except BaseException as exc:  # pragma: no cover - reported by start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        self.connections += 1
        s_writer = None
        try:
            try:
                s_reader, s_writer = await asyncio.open_connection(*self.target, limit=CHUNK)
            except OSError:
                return
            for w in (c_writer, s_writer):
                sock = w.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await asyncio.gather(self._direction(c_reader, s_writer),
                                 self._direction(s_reader, c_writer))
        except asyncio.CancelledError:
            pass
        finally:
            for w in (c_writer, s_writer):
                if w is not None:
                    w.close()
            self._tasks.discard(task)

    async def _direction(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Pump one direction: read as fast as data comes, deliver each chunk
        at arrival + delay, in order.  ``None`` in the queue stands for EOF."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(MAX_QUEUED_CHUNKS)

        async def read_side() -> None:
            try:
                while True:
                    data = await reader.read(CHUNK)
                    await queue.put((loop.time() + self.delay, data or None))
                    if not data:
                        return
            except (ConnectionError, OSError):
                await queue.put((loop.time() + self.delay, None))

        async def write_side() -> None:
            while True:
                due, data = await queue.get()
                while (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    if writer.can_write_eof():
                        with contextlib.suppress(OSError):
                            writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        rd = asyncio.ensure_future(read_side())
        try:
            await write_side()
        except (ConnectionError, OSError):
            pass
        finally:
            rd.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await rd
        # the other direction may still be sending; the connection closes when
        # both have finished (see _handle)


def _parse_target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True, type=_parse_target, help="HOST:PORT to forward to")
    ap.add_argument("--delay", type=float, default=0.025,
                    help="one-way delay in seconds (round trip = 2x); default 0.025")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 to listen on (0 = free)")
    args = ap.parse_args(argv)
    proxy = LatencyProxy(listen_port=args.port, target=args.target, delay=args.delay).start()
    print(proxy.port, flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        while not done.wait(1):
            pass
    finally:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
