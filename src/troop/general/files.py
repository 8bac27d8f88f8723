"""Files on the General: uploads into the FileManager, signed download grants for scouts,
and the collection of blobs no job needs any more.

On a lone General the FileManager runs in-process (its own port, so scouts can reach it
while the API stays on loopback); the blob store is then written directly, streamed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from troop.filemanager import signing
from troop.filemanager.blobstore import BlobInfo, BlobStore
from troop.filemanager.remote import RemoteBlobStore
from troop.protocol.blobstream import blob_key
from troop.store import Store

log = logging.getLogger("troop.general.files")
UNUSED_GRACE = timedelta(hours=1)  # an upload not yet pushed anywhere is kept this long


class FileService:
    def __init__(
        self, store: Store, blobs: BlobStore | RemoteBlobStore, secret: bytes, public_url: str, fm_port: int
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.secret = secret
        self.public_url = public_url.rstrip("/")
        self.fm_port = fm_port

    async def upload(self, chunks: AsyncIterator[bytes], expected_sha: str | None) -> BlobInfo:
        info = await self.blobs.put(chunks, expected_sha=expected_sha)
        await self.store.add_blob(info.sha256, info.size, datetime.now(UTC))
        return info

    async def size_of(self, sha: str) -> int | None:
        if not signing.SHA256_HEX.match(sha):
            return None
        if isinstance(self.blobs, RemoteBlobStore):
            return await self.blobs.fetch_size(sha)
        return self.blobs.size(sha) if self.blobs.exists(sha) else None

    def download(self, sha: str, hostname: str, via: str) -> dict[str, Any]:
        """Task arguments for one scout: a signed URL and the key of the sealed stream."""
        grant = signing.grant(sha, hostname)
        base = self.public_url or f"http://{_host(via)}:{self.fm_port}"
        return {
            "url": f"{base}/fm/v1/blobs/{sha}?{grant.query(self.secret)}",
            "key": blob_key(self.secret, bytes.fromhex(grant.nonce), sha),
        }

    async def collect(self, keep: set[str] | None = None) -> int:
        """Delete blobs that no remaining job refers to, except those in `keep`."""
        gone = 0
        for sha in await self.store.orphan_blobs(datetime.now(UTC) - UNUSED_GRACE):
            if keep and sha in keep:
                continue
            await self.blobs.delete(sha)
            await self.store.delete_blob(sha)
            gone += 1
        if gone:
            log.info("removed unused files", extra={"fields": {"blobs": gone}})
        return gone


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
