"""A loopback TCP relay that can cut a connection after the server has answered.

Placed between a store and its server, it lets a test lose the reply of one call on
purpose: the server has executed the command, the client never hears back. That is the
genuinely ambiguous case a store must report as `StoreUnavailableError`, never as a
plain `False`.
"""

from __future__ import annotations

import contextlib
import socket
import threading

__all__ = ["CuttingRelay"]

_CHUNK = 65536
_IDLE_S = 0.2


class CuttingRelay:
    """Relays 127.0.0.1:<port> to an upstream address, one thread pair per connection."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_IDLE_S)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._drop_next_reply = False
        self._replies_dropped = 0
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def drop_next_reply(self) -> None:
        """The next data the server sends is discarded and that connection is cut."""
        with self._lock:
            self._drop_next_reply = True

    @property
    def replies_dropped(self) -> int:
        """How many replies were cut so far."""
        with self._lock:
            return self._replies_dropped

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream, timeout=2.0)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.settimeout(_IDLE_S)
            with self._lock:
                self._sockets += [client, server]
            pumps = [
                threading.Thread(target=self._pump, args=(client, server, False), daemon=True),
                threading.Thread(target=self._pump, args=(server, client, True), daemon=True),
            ]
            self._threads += pumps
            for pump in pumps:
                pump.start()

    def _pump(self, source: socket.socket, target: socket.socket, is_reply: bool) -> None:
        while not self._stop.is_set():
            try:
                chunk = source.recv(_CHUNK)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            if is_reply:
                with self._lock:
                    cut = self._drop_next_reply
                    if cut:
                        self._drop_next_reply = False
                        self._replies_dropped += 1
                if cut:
                    break
            try:
                target.sendall(chunk)
            except OSError:
                break
        for sock in (source, target):
            _close(sock)

    def close(self) -> None:
        """Stop relaying, close every socket and join every thread (bounded)."""
        self._stop.set()
        _close(self._listener)
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)
        self._acceptor.join(timeout=2.0)
        for thread in self._threads:
            thread.join(timeout=2.0)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already disconnected
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
