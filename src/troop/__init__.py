"""Troop: run commands, push and read files, and run plugins on many servers at once."""

__version__ = "0.1.0"
