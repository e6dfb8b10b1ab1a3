"""A TCP proxy on the loopback address that a test can stall: the network trouble where
packets vanish and nothing is refused (a pulled cable, a firewall dropping, a hung proxy).

``StallProxy(port)`` forwards a free port of 127.0.0.1 to ``127.0.0.1:port`` (the local
PostgreSQL or MariaDB) from one thread. ``stall()`` stops moving bytes in both directions but
keeps every socket open, and accepts no new connection (the kernel still completes their
handshakes, so a connect "succeeds" and then hears nothing, as behind a dropping firewall);
``resume()`` moves them again; ``close()`` ends the thread and closes every socket. Every wait
in it is bounded.

``lose_commit_reply(then)`` arms the fault where a commit succeeds unseen: the next COMMIT a
client sends reaches the server, the server's answer never reaches the client, and then the
proxy drops that connection (``then="drop"``: the client learns its connection is gone) or
stalls everything (``then="stall"``: the client hears nothing more). ``commit_lost`` is set
once the server has answered that COMMIT (it is committed).
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import threading
import time

__all__ = ["StallProxy"]

_CHUNK = 65536
_TICK = 0.05  # seconds: how often the thread looks at its flags
# The statement the drivers send to commit (a whole word: a column such as git_commit is not it).
_COMMIT = re.compile(rb"(?<![A-Za-z0-9_])COMMIT(?![A-Za-z0-9_])")


class _Pipe:
    """One proxied connection: the client's socket and the server's, and what each of them
    still has to be sent."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.to_client = bytearray()
        self.to_server = bytearray()

    def peer(self, sock: socket.socket) -> tuple[socket.socket, bytearray]:
        if sock is self.client:
            return self.server, self.to_server
        return self.client, self.to_client

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.close()


class StallProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int = 0) -> None:
        """``port``: the port to listen on (a free one by default) — a port nothing listened
        on before (connections refused: the database away) serves from now on."""
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._stalled = threading.Event()
        self._stop = threading.Event()
        self._pipes: dict[socket.socket, _Pipe] = {}
        self._lose: str | None = None  # armed: what follows a COMMIT whose answer is lost
        self._doomed: _Pipe | None = None  # the connection whose COMMIT's answer is lost
        self.commit_lost = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._loop, name="stall-proxy", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ test side

    def url(self, url: str) -> str:
        """``url`` (a database URL naming the target) pointed at the proxy instead."""
        from sqlalchemy.engine import make_url

        return make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(False)

    def stall(self) -> None:
        """Stop forwarding (both directions) and accepting; every socket stays open."""
        self._stalled.set()

    def resume(self) -> None:
        self._stalled.clear()

    def lose_commit_reply(self, then: str) -> None:
        """Arm the fault: see the module's description (``then``: "drop" or "stall")."""
        if then not in ("drop", "stall"):
            raise ValueError(f"then must be 'drop' or 'stall', not {then!r}")
        self.commit_lost.clear()
        self._lose = then

    @property
    def connections(self) -> int:
        return len({id(p) for p in self._pipes.values()})

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for pipe in {id(p): p for p in self._pipes.values()}.values():
            pipe.close()
        self._pipes.clear()
        self._listener.close()
        self._selector.close()

    def __enter__(self) -> StallProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ proxy thread

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._stalled.is_set():
                time.sleep(_TICK)  # bytes wait in the kernels' buffers: nothing moves
                continue
            for key, events in self._selector.select(timeout=_TICK):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept()
                    continue
                pipe = self._pipes.get(sock)
                if pipe is None:
                    continue
                if events & selectors.EVENT_READ and not self._read(pipe, sock):
                    self._drop(pipe)
                    continue
                if events & selectors.EVENT_WRITE:
                    self._write(pipe, sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        for sock in (client, server):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe = _Pipe(client, server)
        self._pipes[client] = self._pipes[server] = pipe
        self._selector.register(client, selectors.EVENT_READ)
        self._selector.register(server, selectors.EVENT_READ)

    def _read(self, pipe: _Pipe, sock: socket.socket) -> bool:
        try:
            data = sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:
            return False
        if pipe is self._doomed and sock is pipe.server:
            # The answer to the COMMIT: the server has committed, the client never hears it.
            self._doomed = None
            self.commit_lost.set()
            then, self._lose = self._lose, None
            if then == "stall":  # every socket stays open, and nothing moves any more
                self._stalled.set()
                return True
            return False  # dropped by the caller: the client's connection is gone
        armed = self._lose is not None and self._doomed is None
        if armed and sock is pipe.client and _COMMIT.search(data):
            self._doomed = pipe
        peer, buffer = pipe.peer(sock)
        buffer += data
        self._write(pipe, peer)
        return True

    def _write(self, pipe: _Pipe, sock: socket.socket) -> None:
        buffer = pipe.to_client if sock is pipe.client else pipe.to_server
        if buffer:
            try:
                sent = sock.send(buffer)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._drop(pipe)
                return
            del buffer[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if buffer else 0)
        with contextlib.suppress(KeyError, ValueError):  # dropped meanwhile
            self._selector.modify(sock, events)

    def _drop(self, pipe: _Pipe) -> None:
        for sock in (pipe.client, pipe.server):
            self._pipes.pop(sock, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
        pipe.close()
