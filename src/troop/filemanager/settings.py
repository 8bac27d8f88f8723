"""Settings of `troop-filemanager`, the FileManager run on its own for scale-out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from troop.settings import setting


@dataclass
class FileManagerSettings:
    """Scale-out: every General signs download URLs with the secret this FileManager checks them
    with, so each General points its own secret file (`filemanager_secret_file`) at a copy of this
    one's `secret_file` (DATA_DIR/filemanager.key by default). The Generals also need the service
    token (DATA_DIR/service.token) to upload, check and delete blobs."""

    data_dir: Path = setting(
        Path("/var/lib/troop-filemanager"), "Where the FileManager keeps its blobs, its secret and its service token."
    )
    listen: str = setting("0.0.0.0:6859", "HOST:PORT scouts download from and services upload to.")
    secret_file: str = setting(
        "",
        "Secret that checks signed download URLs and seals file streams; every General needs a copy of it. "
        "Empty: DATA_DIR/filemanager.key, made (mode 0600) on first start.",
    )
    service_token_file: str = setting(
        "",
        "Bearer token that services (the Generals) use to upload, check and delete blobs. "
        "Empty: DATA_DIR/service.token, made (mode 0600) with a random token on first start.",
    )
    max_upload: int = setting(4 * 1024**3, "Largest upload accepted, in bytes; larger ones get 413.")
    log_level: str = setting("info", "debug, info, warning or error.")
    log_file: str = setting("", "Log file; empty logs to stderr.")

    @property
    def secret_path(self) -> Path:
        return Path(self.secret_file) if self.secret_file else self.data_dir / "filemanager.key"

    @property
    def service_token_path(self) -> Path:
        return Path(self.service_token_file) if self.service_token_file else self.data_dir / "service.token"
