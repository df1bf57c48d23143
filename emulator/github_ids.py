"""GitHub's ids as the emulator makes them: REST database ids and GraphQL node ids, shared by the
REST (``github_api.py``) and GraphQL (``github_graphql.py``) endpoints."""

from __future__ import annotations

import base64
import hashlib


def int_id(text: str) -> int:
    """A stable database id for a name (the same name, the same id, on every run)."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) % 90_000_000 + 1_000_000


def node_id(kind: str, n: int) -> str:
    """A GraphQL node id in GitHub's legacy format: base64 of ``0<len(kind)>:<kind><database id>``."""
    return base64.b64encode(f"0{len(kind):02d}:{kind}{n}".encode()).decode().rstrip("=")
