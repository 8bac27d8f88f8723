"""A General's client of a standalone `troop-filemanager`: the same four calls as BlobStore
(put, exists, size, delete), over its service-token routes. Uploads are streamed through."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from troop.filemanager.blobstore import BlobError, BlobInfo, ShaMismatch, TooLarge
from troop.filemanager.signing import SHA256_HEX


class RemoteError(BlobError):
    """The FileManager could not be reached, or answered with an unexpected status."""


class RemoteBlobStore:
    def __init__(self, base_url: str, token: str, max_size: int) -> None:
        import httpx  # only a General that uses a standalone FileManager needs it

        self.base = base_url.rstrip("/") + "/fm/v1/blobs"
        self.max_size = max_size
        self._client = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60.0)
        self._sizes: dict[str, int] = {}  # content never changes under a sha: safe to remember

    async def put(self, chunks: AsyncIterator[bytes], *, expected_sha: str | None = None) -> BlobInfo:
        headers = {"X-Troop-Sha256": expected_sha} if expected_sha else {}
        resp = await self._call("PUT", self.base, content=chunks, headers=headers)
        body = _json(resp)
        if resp.status_code == 413:
            raise RemoteTooLarge(body.get("error") or f"upload is over the FileManager's {self.max_size}-byte limit")
        if resp.status_code == 422 and expected_sha:
            raise ShaMismatch(expected_sha, "(another sha256, says the FileManager)")
        if resp.status_code != 201:
            raise RemoteError(f"FileManager answered {resp.status_code}: {body.get('error', '')}")
        info = BlobInfo(sha256=body["sha256"], size=int(body["size"]), created=bool(body.get("created", True)))
        self._sizes[info.sha256] = info.size
        return info

    def exists(self, sha: str) -> bool:
        return sha in self._sizes

    def size(self, sha: str) -> int | None:
        return self._sizes.get(sha)

    async def fetch_size(self, sha: str) -> int | None:
        if not SHA256_HEX.match(sha):
            return None
        resp = await self._call("HEAD", f"{self.base}/{sha}")
        if resp.status_code != 200:
            return None
        self._sizes[sha] = int(resp.headers.get("x-troop-size", "0"))
        return self._sizes[sha]

    async def delete(self, sha: str) -> bool:
        self._sizes.pop(sha, None)
        resp = await self._call("DELETE", f"{self.base}/{sha}")
        return bool(resp.status_code == 200)

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, url: str, **kw: Any) -> Any:
        import httpx

        try:
            return await self._client.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach the FileManager at {self.base}: {exc}") from exc


class RemoteTooLarge(TooLarge):
    """The FileManager's own 413, with its message (it knows its limit best)."""

    def __init__(self, message: str) -> None:
        BlobError.__init__(self, message)
        self.size, self.limit = -1, -1


def _json(resp: Any) -> dict[str, Any]:
    try:
        body = json.loads(resp.content or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
