"""Settings of `troop-general`. Every field: a safe default and what it means."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from troop.settings import setting


@dataclass
class GeneralSettings:
    data_dir: Path = setting(
        Path("/var/lib/troop-general"),
        "Where the General keeps its key, admin token and (by default) its SQLite store.",
    )
    api_listen: str = setting(
        "127.0.0.1:6858",
        "HOST:PORT of the HTTP API. Loopback by default: turn on TLS (tls_cert, tls_key) before opening it wider.",
    )
    scout_listen: str = setting(
        "0.0.0.0:6954", "HOST:PORT scouts connect to. Traffic on it is signed and AES-256-GCM sealed."
    )
    auto_accept: bool = setting(
        False, "Accept every new scout key at once. Off by default: new scouts wait as pending for `troop key accept`."
    )
    store: str = setting("", "SQLAlchemy URL of the store. Empty: sqlite+aiosqlite:///DATA_DIR/troop.db.")
    filemanager_listen: str = setting(
        "0.0.0.0:6859", "HOST:PORT of the in-process FileManager that scouts download from. Empty: none."
    )
    filemanager_url: str = setting(
        "", "Base URL scouts download files from. Empty: http://ADDRESS-THE-SCOUT-DIALLED:FILEMANAGER-PORT."
    )
    filemanager_secret_file: str = setting(
        "", "Secret that signs download URLs and seals file streams. Empty: DATA_DIR/filemanager.key."
    )
    filemanager_token_file: str = setting(
        "", "Service token of a standalone troop-filemanager (its DATA_DIR/service.token), with filemanager_url."
    )
    max_upload: int = setting(4 * 1024**3, "Largest file accepted for upload, in bytes; more gets 413.", minimum=1)
    max_read: int = setting(4 * 1024 * 1024, "Largest --max-bytes a file read may ask for, in bytes.", minimum=0)
    plugin_repo: str = setting("", "Git URL or path of the plugin repository. Empty: only the built-in scout_manager.")
    max_plugin_size: int = setting(256 * 1024 * 1024, "Largest plugin file indexed, in bytes.", minimum=1)
    bus: str = setting("", "URL of the bus between Generals (nats://...). Empty: in-process, for a lone General.")
    blacklist_file: str = setting(
        "",
        "File of blacklisted commands, one per line. Empty: DATA_DIR/blacklist, made with the defaults on first start.",
    )
    heartbeat: float = setting(
        15.0, "Seconds between heartbeats on each scout connection; three missed ones close it.", minimum=0.1
    )
    grace: float = setting(
        5.0, "Seconds a job waits past its timeout for results before naming hosts timed_out or no ack.", minimum=0
    )
    default_timeout: float = setting(60.0, "Job timeout in seconds when the caller gives none.", minimum=0.001)
    max_timeout: float = setting(86400.0, "Largest job timeout a caller may ask for, in seconds.", minimum=0.001)
    max_output: int = setting(
        1024 * 1024,
        "Largest stdout and stderr kept per host and stream, in bytes; more is truncated and flagged.",
        minimum=0,
    )
    retention_days: float = setting(30.0, "Finished jobs older than this many days are pruned.", minimum=0)
    retention_jobs: int = setting(10000, "At most this many finished jobs are kept; the oldest go first.", minimum=0)
    rotate_interval: float = setting(
        86400.0, "Seconds between automatic rotations of the session key; 0 turns the schedule off.", minimum=0
    )
    key_bits: int = setting(3072, "Size of the General's RSA key when it is first generated.", minimum=2048)
    max_frame: int = setting(8 * 1024 * 1024, "Largest frame accepted on the scout port, in bytes.", minimum=65536)
    max_handshake_rate: float = setting(
        500.0,
        "Handshakes per second the General takes at most (RSA work); a reconnecting fleet waits in line.",
        minimum=1,
    )
    handshake_timeout: float = setting(10.0, "Seconds a new scout connection has to finish its handshake.", minimum=0.1)
    tls_cert: str = setting("", "PEM certificate for HTTPS on the API; with tls_key.")
    tls_key: str = setting("", "PEM private key for HTTPS on the API.")
    log_level: str = setting("info", "debug, info, warning or error.", choices=("debug", "info", "warning", "error"))
    log_file: str = setting("", "Log file; empty logs to stderr.")

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'troop.db'}"

    @property
    def filemanager_secret_path(self) -> Path:
        return Path(self.filemanager_secret_file) if self.filemanager_secret_file else self.data_dir / "filemanager.key"

    @property
    def blacklist_path(self) -> Path:
        return Path(self.blacklist_file) if self.blacklist_file else self.data_dir / "blacklist"
