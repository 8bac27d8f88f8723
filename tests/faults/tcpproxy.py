"""A TCP proxy for fault tests: forwards both ways until paused, then holds every byte.

Paused, it stops reading, so what either side sends waits in kernel buffers and both
connections stay open: a network partition, as seen by a General and a scout. Resumed,
everything held is delivered, in order.
"""

from __future__ import annotations

import selectors
import socket
import threading


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = int(self.listener.getsockname()[1])
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._thread = threading.Thread(target=self._run, name="tcpproxy", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in list(self._peers):
            sock.close()
        self.listener.close()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        while not self._stop.is_set():
            if self._paused.is_set():
                self._stop.wait(0.02)
                continue
            for key, _ in sel.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.listener:
                    client, _ = self.listener.accept()
                    upstream = socket.create_connection(self.target)
                    for a, b in ((client, upstream), (upstream, client)):
                        a.setblocking(True)
                        self._peers[a] = b
                        sel.register(a, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                peer = self._peers.get(sock)
                if not data or peer is None:
                    for s in (sock, peer):
                        if s is not None and s in self._peers:
                            sel.unregister(s)
                            del self._peers[s]
                            s.close()
                    continue
                peer.sendall(data)
        sel.close()
