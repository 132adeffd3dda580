"""HTTP servers for tests, bound to 127.0.0.1 on a free port: a static directory (with Range requests)
and a programmable faulty server. Both record every request so tests can assert what was (not) asked."""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 64 * 1024

# What a faulty route does for one request.
ACTIONS = ("ok", "404", "500", "wrong-byte", "truncate", "short", "reset", "slow", "drip")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class Route:
    """Bytes served at one path. ``actions`` are used one per request, then ``then`` for the rest."""

    data: bytes
    actions: list[str] = field(default_factory=list)
    then: str = "ok"
    range: bool = True  # honour Range requests
    delay: float = 5.0  # "slow": seconds before the response starts
    drip: float = 0.05  # "drip": seconds between 64 KiB chunks

    def next_action(self) -> str:
        action = self.actions.pop(0) if self.actions else self.then
        assert action in ACTIONS, action
        return action


class TestServer(ThreadingHTTPServer):
    __test__ = False  # not a test class for pytest
    daemon_threads = True
    block_on_close = False

    def __init__(self, root: Path | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> TestServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()

    def gets(self, path: str | None = None) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == "GET" and (path is None or r.path == path)]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (timeouts, resets) are part of the tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TestServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.requests.append(Request(self.command, path, self.headers.get("Range")))
        route = self.server.routes.get(path)
        if route is not None:
            self._route(route, head)
            return
        file = self._file(path)
        if file is None:
            self._status(404)
            return
        with file.open("rb") as f:
            self._send(file.stat().st_size, f, True, head)

    def _file(self, path: str) -> Path | None:
        if self.server.root is None or ".." in path.split("/"):
            return None
        file = self.server.root / path.lstrip("/")
        return file if file.is_file() else None

    def _status(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _route(self, route: Route, head: bool) -> None:
        action = route.next_action()
        data = route.data
        if action == "404":
            return self._status(404)
        if action == "500":
            return self._status(500)
        if action == "slow":
            time.sleep(route.delay)
        if action == "wrong-byte":
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        if action == "short":  # no Content-Length: the client cannot tell the body is cut
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return None
        cut = len(data) // 2 if action in ("truncate", "reset") else None
        drip = route.drip if action == "drip" else 0.0
        self._send(len(data), _BytesReader(data), route.range, head, cut=cut, drip=drip, reset=action == "reset")
        return None

    def _send(
        self,
        size: int,
        f: BinaryIO | _BytesReader,
        range_ok: bool,
        head: bool,
        cut: int | None = None,
        drip: float = 0.0,
        reset: bool = False,
    ) -> None:
        """Send bytes [start, size) honouring Range; stop at byte ``cut`` (closing or resetting the connection)."""
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if range_ok and match:
            start = int(match.group(1))
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        if range_ok:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        if head:
            return
        end = size if cut is None or cut <= start else cut
        f.seek(start)
        sent = start
        while sent < end and (chunk := f.read(min(CHUNK, end - sent))):
            self.wfile.write(chunk)
            sent += len(chunk)
            if drip:
                time.sleep(drip)
        if end < size:
            self.wfile.flush()
            if reset:  # RST instead of FIN: the client sees "connection reset by peer"
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def seek(self, pos: int) -> None:
        self.pos = pos

    def read(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk
