"""Run an ASGI app with uvicorn inside an already running event loop, on a pre-bound socket
(so port 0 works and the bound address is known before serving)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from troop.settings import parse_hostport


class HttpServer:
    def __init__(self, app: Any, listen: str, default_port: int, *, cert: str = "", key: str = "") -> None:
        host, port = parse_hostport(listen, default_port)
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(1024)
        self.sock.setblocking(False)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        self._app, self._cert, self._key = app, cert, key
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            self._app, log_level="warning", access_log=False, lifespan="off",
            ssl_certfile=self._cert or None, ssl_keyfile=self._key or None, timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        # The owning process handles SIGTERM/SIGINT and stops its servers in order.
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[self.sock]))
        while not server.started and not self._task.done():  # noqa: ASYNC110 - uvicorn has no started event
            await asyncio.sleep(0.005)
        if self._task.done():
            self._task.result()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 3)
