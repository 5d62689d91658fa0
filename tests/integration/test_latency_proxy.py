"""Self-test of tests/support/latency_proxy.py: an echo server behind the proxy."""

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.latency_proxy import LatencyProxy

DELAY = 0.02


@pytest.fixture
def echo_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.05)  # so the accept loop notices `stop`
    stop = threading.Event()
    conns = []

    def serve(conn):
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def accept():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conns.append(conn)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(2)
    srv.close()
    for c in conns:
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _recv_exactly(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed early")
        buf += chunk
    return buf


def _client(port):
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def test_round_trip_costs_two_delays(echo_server):
    with LatencyProxy(target=("127.0.0.1", echo_server), delay=DELAY) as proxy:
        with _client(proxy.port) as c:
            times = []
            for i in range(5):
                msg = b"ping %d" % i
                t0 = time.perf_counter()
                c.sendall(msg)
                assert _recv_exactly(c, len(msg)) == msg
                times.append(time.perf_counter() - t0)
    assert min(times) >= 2 * DELAY, times
    assert sorted(times)[len(times) // 2] < 2 * DELAY + 0.040, times


def test_pipelined_chunks_are_not_serialised_and_keep_order(echo_server):
    """20 chunks sent back to back arrive after ~one round trip, not 20."""
    with LatencyProxy(target=("127.0.0.1", echo_server), delay=DELAY) as proxy:
        with _client(proxy.port) as c:
            msgs = [b"%04d" % i for i in range(20)]
            t0 = time.perf_counter()
            for m in msgs:
                c.sendall(m)
                time.sleep(0.001)
            got = _recv_exactly(c, 4 * len(msgs))
            elapsed = time.perf_counter() - t0
    assert got == b"".join(msgs)
    assert elapsed < 2 * DELAY + 0.1, elapsed  # serialised would be >= 20 * 2 * DELAY


def test_bulk_transfer_and_half_close(echo_server):
    payload = bytes(range(256)) * 4096  # 1 MiB
    with LatencyProxy(target=("127.0.0.1", echo_server), delay=0.005) as proxy:
        with _client(proxy.port) as c:
            got = bytearray()

            def reader():
                while True:
                    data = c.recv(65536)
                    if not data:
                        return
                    got.extend(data)

            t = threading.Thread(target=reader)
            t.start()
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)  # EOF travels through; echo server closes
            t.join(10)
            assert not t.is_alive()
    assert bytes(got) == payload


def test_stop_closes_open_connections_and_listener(echo_server):
    proxy = LatencyProxy(target=("127.0.0.1", echo_server), delay=DELAY).start()
    port = proxy.port
    c = _client(port)
    c.sendall(b"x")
    assert _recv_exactly(c, 1) == b"x"
    proxy.stop()
    c.settimeout(2)
    assert c.recv(10) == b""  # closed by the proxy
    c.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_unreachable_target_closes_client():
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    with LatencyProxy(target=("127.0.0.1", dead_port), delay=DELAY) as proxy:
        with _client(proxy.port) as c:
            c.settimeout(2)
            assert c.recv(10) == b""


def test_cli_prints_port_and_forwards(echo_server):
    script = Path(__file__).resolve().parents[1] / "support" / "latency_proxy.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--target", f"127.0.0.1:{echo_server}",
         "--delay", str(DELAY), "--port", "0"],
        stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        with _client(port) as c:
            t0 = time.perf_counter()
            c.sendall(b"hello")
            assert _recv_exactly(c, 5) == b"hello"
            assert time.perf_counter() - t0 >= 2 * DELAY
    finally:
        proc.terminate()
        assert proc.wait(5) == 0
