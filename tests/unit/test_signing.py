"""Signed download URLs: only the exact grant, unexpired and unforged, verifies."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from troop.filemanager.signing import SHA256_HEX, Grant, grant, load_or_create_secret, verify

SECRET = b"k" * 32
SHA = "0123456789abcdef" * 4
NOW = 1_700_000_000.0


def params(g: Grant, secret: bytes = SECRET) -> dict[str, str]:
    return dict(parse_qsl(g.query(secret)))


def test_good_grant_verifies() -> None:
    g = grant(SHA, "web1", ttl=300, now=NOW)
    got = verify(SECRET, SHA, params(g), now=NOW + 299)
    assert got == g
    assert len(got.nonce) == 32


def test_each_grant_has_its_own_nonce() -> None:
    assert grant(SHA, "web1", now=NOW).nonce != grant(SHA, "web1", now=NOW).nonce


def test_expired() -> None:
    g = grant(SHA, "web1", ttl=300, now=NOW)
    with pytest.raises(ValueError, match="expired"):
        verify(SECRET, SHA, params(g), now=NOW + 301)


def test_forged_with_another_secret() -> None:
    g = grant(SHA, "web1", now=NOW)
    with pytest.raises(ValueError, match="bad signature"):
        verify(SECRET, SHA, params(g, b"x" * 32), now=NOW)


def test_extended_expiry_is_a_forgery() -> None:
    p = params(grant(SHA, "web1", now=NOW))
    p["exp"] = str(int(p["exp"]) + 3600)
    with pytest.raises(ValueError, match="bad signature"):
        verify(SECRET, SHA, p, now=NOW)


def test_other_sha() -> None:
    p = params(grant(SHA, "web1", now=NOW))
    with pytest.raises(ValueError, match="bad signature"):
        verify(SECRET, "f" * 64, p, now=NOW)


def test_other_host() -> None:
    p = params(grant(SHA, "web1", now=NOW))
    p["host"] = "web2"
    with pytest.raises(ValueError, match="bad signature"):
        verify(SECRET, SHA, p, now=NOW)


def test_other_nonce() -> None:
    p = params(grant(SHA, "web1", now=NOW))
    p["nonce"] = "0" * 32
    with pytest.raises(ValueError, match="bad signature"):
        verify(SECRET, SHA, p, now=NOW)


@pytest.mark.parametrize("drop", ["exp", "host", "nonce", "sig"])
def test_missing_param(drop: str) -> None:
    p = params(grant(SHA, "web1", now=NOW))
    del p[drop]
    with pytest.raises(ValueError, match="unsigned or malformed"):
        verify(SECRET, SHA, p, now=NOW)


@pytest.mark.parametrize(
    ("key", "value"),
    [("exp", "soon"), ("exp", ""), ("exp", "9" * 5000), ("sig", ""), ("sig", "zz"), ("sig", "é" * 4),
     ("host", "web1\nGET"), ("nonce", "../..")],
)
def test_malformed_param(key: str, value: str) -> None:
    p = params(grant(SHA, "web1", now=NOW))
    p[key] = value
    with pytest.raises(ValueError):  # never TypeError or anything else a server would turn into a 500
        verify(SECRET, SHA, p, now=NOW)


@pytest.mark.parametrize("sha", ["", "..", SHA.upper(), SHA[:-1], SHA + "0", SHA + "\n", "../" + SHA[3:]])
def test_not_a_sha(sha: str) -> None:
    p = params(grant(SHA, "web1", now=NOW))
    with pytest.raises(ValueError, match="not a sha256"):
        verify(SECRET, sha, p, now=NOW)
    assert not SHA256_HEX.match(sha)


def test_secret_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "filemanager.key"
    first = load_or_create_secret(path)
    assert len(first) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secret(path) == first


def test_short_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "filemanager.key"
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        load_or_create_secret(path)
