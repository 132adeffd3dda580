"""An HTTPS server on 127.0.0.1 that requires a client certificate from a CA, like nginx's ssl_verify_client.

It records the SHA-1 fingerprint of each client certificate (nginx's $ssl_client_fingerprint) and every
refused handshake, and serves files from a directory.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class MutualTLSServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, root: Path, chain: Path, key: Path, client_ca: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(chain), str(key))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(str(client_ca))
        self.fingerprints: list[str] = []
        self.refused: list[str] = []
        self.served: list[str] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> MutualTLSServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The handshake runs in the request's thread, so a refused client is recorded, not fatal.
        raw: socket.socket = request
        raw.settimeout(10)
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            with self.lock:
                self.refused.append(str(exc))
            return
        der = tls.getpeercert(binary_form=True)
        with self.lock:
            self.fingerprints.append(hashlib.sha1(der).hexdigest() if der else "")
        super().finish_request(tls, client_address)


class _Handler(SimpleHTTPRequestHandler):
    server: MutualTLSServer

    def __init__(self, request: Any, client_address: Any, server: MutualTLSServer) -> None:
        super().__init__(request, client_address, server, directory=str(server.root))

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.served.append(self.path)
        self.path = self.path.split("?", 1)[0]
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass
