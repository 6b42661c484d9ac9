"""RFC 3339 timestamps as proto3 JSON writes them."""

from __future__ import annotations

from datetime import datetime, timezone


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
