"""Errors shared by every part of Troop.

    TroopError
    ├── ConfigError          a setting is missing or invalid (only entry points exit on it)
    └── protocol.errors.ProtocolError   (see troop.protocol.errors)
"""


class TroopError(Exception):
    """Base of every error Troop raises on purpose."""


class ConfigError(TroopError):
    """A setting is missing, malformed or out of range."""
