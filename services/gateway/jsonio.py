"""JSON in and out of the gateway's routes: the request body read and checked field by
field (a bad field is 422 naming it), responses that serialise what the routes hold
(datetimes with their timezone, protobuf Struct/Value/messages as plain JSON), and the
reference server's pagination headers."""

from __future__ import annotations

import base64
import json
import math
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse

from graphmesh.jsonvalues import whole_numbers
from services.gateway.errors import HTTPError

_MISSING = object()
# The largest integer a route takes for an offset, a limit, a depth or a version (int32).
INT_MAX = 2**31 - 1
# JSON values are kept as protobuf Values, whose numbers are doubles.
TOO_LARGE = "it holds a number too large for a double (beyond about 1.8e308)"

# -- out -------------------------------------------------------------------------------


def iso(value: timestamp_pb2.Timestamp | datetime | None) -> str | None:
    """ISO 8601 with a timezone (UTC for a naive datetime); None for an unset Timestamp."""
    if value is None:
        return None
    if isinstance(value, timestamp_pb2.Timestamp):
        if not value.seconds and not value.nanos:
            return None
        value = value.ToDatetime(tzinfo=timezone.utc)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat()


def plain(message: Message | None) -> Any:
    """A protobuf message as plain JSON: a Struct as a dict, a Value as its value, a
    ListValue as a list, any other message with its proto field names."""
    if message is None:
        return None
    return whole_numbers(json_format.MessageToDict(message, preserving_proto_field_name=True))


def struct_or_none(holder: Message, field: str) -> Any:
    """The plain value of an optional message field, None when unset."""
    return plain(getattr(holder, field)) if holder.HasField(field) else None


def _default(obj: Any) -> Any:
    if isinstance(obj, (datetime, timestamp_pb2.Timestamp)):
        return iso(obj)
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, Message):
        return plain(obj)
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(content: Any) -> str:
    return json.dumps(content, default=_default, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class JsonResponse(JSONResponse):
    """A JSONResponse that also serialises datetimes, Timestamps and protobuf messages."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode()


def json_response(content: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JsonResponse:
    return JsonResponse(content, status_code=status, headers=dict(headers or {}))


def pagination_headers(returned: int, offset: int, next_offset: int | None) -> dict[str, str]:
    """As the reference server: the last page says the total (offset + what it returned);
    a page with more after it names the next offset, and a total of next + 1."""
    if next_offset is None:
        return {"X-Pagination-Total": str(offset + returned)}
    return {"X-Pagination-Total": str(next_offset + 1), "X-Pagination-Next": str(next_offset)}


# -- in --------------------------------------------------------------------------------


async def read_json(request: Request, *, required: Iterable[str] = ()) -> dict[str, Any]:
    """The request body as a JSON object ({} when empty); 422 when it is not JSON, not an
    object, or lacks a required field."""
    raw = await request.body()
    if not raw.strip():
        body: Any = {}
    else:
        try:
            body = json.loads(raw, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError):
            raise HTTPError(422, "Invalid JSON in request body") from None
    if not isinstance(body, dict):
        raise HTTPError(422, f"the request body must be a JSON object, got {_type(body)}")
    for name in required:
        if body.get(name) is None:
            raise HTTPError(422, f"'{name}' is a required property")
    return body


def _no_constant(name: str) -> Any:
    # NaN and Infinity are Python's extension of JSON: not JSON, and not storable.
    raise ValueError(f"{name} is not JSON")


def _type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


def _get(body: Mapping[str, Any], name: str, default: Any) -> Any:
    value = body.get(name, _MISSING)
    return default if value is _MISSING or value is None else value


def get_str(body: Mapping[str, Any], name: str, default: str | None = None) -> str | None:
    value = _get(body, name, default)
    if value is not default and not isinstance(value, str):
        raise HTTPError(422, f"'{name}' must be a string, got {_type(value)}")
    return value


def get_dict(body: Mapping[str, Any], name: str, default: dict | None = None) -> dict | None:
    value = _get(body, name, default)
    if value is not default and not isinstance(value, dict):
        raise HTTPError(422, f"'{name}' must be an object, got {_type(value)}")
    return value


def get_str_list(body: Mapping[str, Any], name: str, default: list | None = None) -> list[str] | None:
    """An array of strings; a single string is taken as a one-item array."""
    value = _get(body, name, default)
    if isinstance(value, str):
        return [value]
    if value is not default and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        raise HTTPError(422, f"'{name}' must be an array of strings")
    return value


def get_int(body: Mapping[str, Any], name: str, default: int | None = None, *, minimum: int | None = None,
            maximum: int | None = None) -> int | None:
    value = _get(body, name, default)
    if value is default:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise HTTPError(422, f"'{name}' must be an integer, got {_type(value)}")
    return _bounded(name, value, minimum, maximum)


def get_number(body: Mapping[str, Any], name: str, default: float | None = None) -> float | None:
    value = _get(body, name, default)
    if value is default:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HTTPError(422, f"'{name}' must be a number, got {_type(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise HTTPError(422, f"'{name}' is too large a number")
    return number


def get_bool(body: Mapping[str, Any], name: str, default: bool | None = None) -> bool | None:
    value = _get(body, name, default)
    if value is not default and not isinstance(value, bool):
        raise HTTPError(422, f"'{name}' must be a boolean, got {_type(value)}")
    return value


def get_enum(body: Mapping[str, Any], name: str, choices: Sequence[str], default: str | None = None) -> str | None:
    value = _get(body, name, default)
    if value is not default and value not in choices:
        raise HTTPError(422, f"'{name}' must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


@dataclass(frozen=True)
class SearchPage:
    """The paging part of a search body (assistants, threads, crons): limit, offset, sort, select."""

    limit: int
    offset: int
    sort_by: str
    ascending: bool
    select: list[str] | None


def search_page(body: Mapping[str, Any], *, sort_fields: Sequence[str], default_sort: str,
                fields: Sequence[str]) -> SearchPage:
    select = get_str_list(body, "select")
    for name in select or ():
        if name not in fields:
            raise HTTPError(422, f"'select' names an unknown field {name!r}; fields: {', '.join(fields)}")
    return SearchPage(limit=get_int(body, "limit", 10, minimum=1, maximum=1000),
                      offset=get_int(body, "offset", 0, minimum=0),
                      sort_by=get_enum(body, "sort_by", tuple(sort_fields), default_sort),
                      ascending=get_enum(body, "sort_order", ("asc", "desc"), "desc") == "asc",
                      select=select)


def _bounded(name: str, value: int, minimum: int | None, maximum: int | None) -> int:
    # Every integer a route reads goes into a 32-bit proto field (offsets, limits, depths,
    # versions): beyond it is 422 here, not a failed conversion (500) later.
    maximum = INT_MAX if maximum is None else min(maximum, INT_MAX)
    if minimum is not None and value < minimum:
        raise HTTPError(422, f"'{name}' must be at least {minimum}, got {_short(value)}")
    if value > maximum:
        raise HTTPError(422, f"'{name}' must be at most {maximum}, got {_short(value)}")
    return value


def _short(value: int) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"


def query_int(request: Request, name: str, default: int | None = None, *, minimum: int | None = None,
              maximum: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPError(422, f"query parameter '{name}' must be an integer, got {raw!r}") from None
    return _bounded(name, value, minimum, maximum)


def query_bool(request: Request, name: str, default: bool = False) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1", "yes", "on"):
        return True
    if raw.lower() in ("false", "0", "no", "off"):
        return False
    raise HTTPError(422, f"query parameter '{name}' must be true or false, got {raw!r}")


def to_struct(value: Mapping[str, Any] | None, name: str = "value") -> struct_pb2.Struct:
    """A JSON object as a Struct (422 naming the field when it cannot be one)."""
    struct = struct_pb2.Struct()
    if value:
        try:
            struct.update(value)
        except OverflowError:
            raise HTTPError(422, f"'{name}' cannot be stored: {TOO_LARGE}") from None
        except (ValueError, TypeError) as exc:
            raise HTTPError(422, f"'{name}' cannot be stored: {exc}") from None
    return struct


def to_value(value: Any, name: str = "value") -> struct_pb2.Value:
    """Any JSON value as a protobuf Value."""
    out = struct_pb2.Value()
    try:
        json_format.ParseDict(value, out)
    except OverflowError:
        raise HTTPError(422, f"'{name}' cannot be stored: {TOO_LARGE}") from None
    except json_format.ParseError as exc:
        raise HTTPError(422, f"'{name}' cannot be stored: {exc}") from None
    return out
