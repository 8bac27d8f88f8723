"""Settings of `troop-scout`. Every field: a safe default and what it means."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from troop.settings import setting


@dataclass
class ScoutSettings:
    general: list[str] = setting(
        ["127.0.0.1:6954"],
        "General addresses HOST:PORT, comma separated; the scout spreads over them and moves on when one fails.",
    )
    data_dir: Path = setting(
        Path("/var/lib/troop-scout"), "Where the scout keeps its private key (mode 0600) and the pinned General key."
    )
    hostname: str = setting("", "The name this scout answers to. Empty: the OS hostname.")
    tags: list[str] = setting([], "Tags for targeting (--tag), comma separated.")
    plugins: list[str] = setting(
        [], "Plugins to install, NAME or NAME:VERSION, comma separated; scout_manager is always installed."
    )
    general_fingerprint: str = setting(
        "", "sha256:... of the General's public key. Empty: trust the first General met, then refuse any other key."
    )
    blacklist_file: str = setting("", "This scout's own blacklist file, added to the General's. Empty: none.")
    allow_data_dir: bool = setting(
        False, "Let file push, read and ls touch the scout's own data dir (its private key lives there)."
    )
    max_concurrency: int = setting(16, "Tasks run at once on this scout; more wait their turn.", minimum=1)
    key_bits: int = setting(2048, "Size of the scout's RSA key when it is first generated.", minimum=2048)
    reconnect_min: float = setting(0.5, "First reconnect delay in seconds (with jitter).", minimum=0.01)
    reconnect_max: float = setting(30.0, "Largest reconnect delay in seconds (with jitter).", minimum=0.01)
    connect_timeout: float = setting(5.0, "Seconds to wait for a TCP connection and the General's hello.", minimum=0.1)
    max_frame: int = setting(8 * 1024 * 1024, "Largest frame accepted from the General, in bytes.", minimum=65536)
    log_level: str = setting("info", "debug, info, warning or error.", choices=("debug", "info", "warning", "error"))
    log_file: str = setting("", "Log file; empty logs to stderr.")
