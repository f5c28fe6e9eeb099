"""Opaque keyset page tokens: (created_at, id) of the last row of a page."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any, Callable

from graphmesh.errors import InvalidArgument, NotFound

# Newest first by (created_at, key); a page token names the last row of the previous page.
# `{table}` and `{key}` are this package's own table and id column names, never a caller's text.
KEYSET_SELECT = "SELECT * FROM {table}"
KEYSET_AFTER = "(created_at, {key}) < (%s, %s)"
KEYSET_ORDER = " ORDER BY created_at DESC, {key} DESC LIMIT %s"


# The most rows a listing RPC returns at once.
MAX_PAGE_SIZE = 1000


def page_size(requested: int, default: int = 50, field: str = "page_size") -> int:
    """A listing's page size: the caller's, or `default` when it asked for none."""
    if requested > MAX_PAGE_SIZE:
        raise InvalidArgument(f"{field} may be at most {MAX_PAGE_SIZE}")
    return requested or default


def filters(*conditions: tuple[str, Any]) -> tuple[list[str], list[Any]]:
    """WHERE terms and their arguments, one per (term, value) whose value is given. None and
    "" mean "no filter"; an empty list is a filter that matches nothing (a caller who may
    see no graph sees no row), so pass `x or None` for a list where empty means "any"."""
    given = [(term, value) for term, value in conditions if value is not None and value != ""]
    return [term for term, _ in given], [value for _, value in given]


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


async def keyset_page(connection: Callable[[], Any], table: str, key: str, where: list[str], args: list[Any], *,
                      page_size: int, page_token: str, from_row: Callable[[dict], Any]) -> tuple[list, str]:
    """One page of `table`'s rows matching `where` (SQL conditions with `args`), newest
    first, as records built by `from_row` (each with `created_at` and a `key` attribute),
    and the token of the next page ("" after the last one). The token is checked before
    `connection()` is opened."""
    where, args = list(where), list(args)
    if page_token:
        created_at, last_id = decode_page_token(page_token)
        where.append(KEYSET_AFTER.format(key=key))
        args.extend([created_at, last_id])
    sql = KEYSET_SELECT.format(table=table)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += KEYSET_ORDER.format(key=key)
    args.append(page_size + 1)
    async with connection() as conn:
        rows = await (await conn.execute(sql, args)).fetchall()
    records = [from_row(r) for r in rows[:page_size]]
    token = ""
    if len(rows) > page_size:
        last = records[-1]
        token = encode_page_token(last.created_at, getattr(last, key))
    return records, token
