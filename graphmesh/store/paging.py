"""Opaque keyset page tokens: (created_at, id) of the last row of a page."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime

from graphmesh.errors import InvalidArgument, NotFound


def encode_page_token(created_at: datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        created, row_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return datetime.fromisoformat(created), str(uuid.UUID(row_id))
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidArgument("page_token is not a token this service issued") from exc


def parse_uuid(value: str, what: str) -> str:
    """A canonical UUID string, or NotFound: an id that cannot exist names nothing."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise NotFound(f"{what} '{value}' not found ({what} ids are UUIDs)") from None
