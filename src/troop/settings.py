"""Typed settings for each daemon: defaults, then a TOML file, then TROOP_* variables, then flags.

Each field of a settings dataclass carries its documentation in `metadata["doc"]`;
docs/configuration.md lists them all and a test keeps the two in step. Values are checked
at load; a bad one raises ConfigError naming the key (only entry points turn that into an exit).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from troop.errors import ConfigError

T = TypeVar("T")


def setting(default: Any, doc: str, *, minimum: float | None = None, choices: tuple[str, ...] = ()) -> Any:
    """A dataclass field with its documentation and its allowed values next to it."""
    meta = {"doc": doc, "minimum": minimum, "choices": choices}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def check(obj: Any) -> None:
    """Raise ConfigError naming the first setting outside its allowed values."""
    for f in dataclasses.fields(obj):
        value, minimum, choices = getattr(obj, f.name), f.metadata.get("minimum"), f.metadata.get("choices")
        if minimum is not None and isinstance(value, int | float) and not value >= minimum:
            raise ConfigError(f"setting {f.name!r}: {value!r} is below the minimum {minimum:g}")
        if choices and value not in choices:
            raise ConfigError(f"setting {f.name!r}: {value!r} is not one of {', '.join(choices)}")


def load(
    cls: type[T],
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    env_prefix: str = "TROOP_",
) -> T:
    """Build `cls` from its defaults, the TOML file, the environment and explicit overrides."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if config_file:
        values.update(_read_toml(Path(config_file)))
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"{config_file}: unknown setting(s): {', '.join(sorted(unknown))}")
    for name in names:
        raw = env.get(env_prefix + name.upper())
        if raw is not None:
            values[name] = raw
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    obj = cls(**{name: _coerce(name, hints[name], v) for name, v in values.items()})
    check(obj)
    return obj


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # only when there is a file: the scout often has none

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _coerce(name: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):  # X | None
        if value is None or value == "":
            return None
        inner = next(a for a in args if a is not type(None))
        return _coerce(name, inner, value)
    try:
        if origin is list:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            return [_coerce(name, args[0], v) for v in value]
        if hint is bool:
            return _to_bool(value)
        if hint in (int, float):
            if isinstance(value, bool):
                raise ValueError("a number is required")
            return hint(value)
        if hint is str:
            if not isinstance(value, str | int | float):
                raise ValueError("a string is required")
            return str(value)
        if hint is Path:
            return Path(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: invalid value {value!r}: {exc}") from exc
    return value


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def parse_hostport(value: str, default_port: int) -> tuple[str, int]:
    """'host:port', 'host', ':port' or '[v6]:port' -> (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, ""
    try:
        port_num = int(port) if port else default_port
    except ValueError as exc:
        raise ConfigError(f"bad address {value!r}: port must be a number") from exc
    if not 0 <= port_num <= 65535:
        raise ConfigError(f"bad address {value!r}: port out of range")
    return host or "0.0.0.0", port_num  # noqa: S104 - an empty host means every interface


def describe(cls: type[Any]) -> list[tuple[str, str, str]]:
    """(name, default, doc) for every setting: what docs/configuration.md is checked against."""
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        out.append((f.name, default, f.metadata.get("doc", "")))
    return out
