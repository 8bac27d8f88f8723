"""Result data from scouts, made safe for JSON and the store."""

from __future__ import annotations

import base64
import math
from datetime import datetime
from typing import Any


def jsonable_data(data: dict[str, Any]) -> dict[str, Any]:
    """Result data as the store and the API keep it: bytes become base64 (and text if UTF-8),
    at any depth; what JSON cannot hold (NaN, timestamps, extension types) is dropped or
    turned into text, so one odd result can never stop results being stored."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key)
        if isinstance(value, bytes):
            out[f"{key}_base64"] = base64.b64encode(value).decode()
            if key == "content":
                try:
                    out["text"] = value.decode("utf-8")
                except UnicodeDecodeError:
                    out["text"] = None
        else:
            out[key] = _jsonable(value, depth=0)
    return out


def _jsonable(value: Any, depth: int) -> Any:
    if depth > 32:
        return None
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return None
