"""Checks every request passes before its handler runs: what no handler should ever have
to think about. Text with NUL characters (Postgres text cannot hold them), numbers that are
not finite (JSON has no NaN or Infinity), values nested absurdly deep and ids or names longer
than their limit are refused with INVALID_ARGUMENT naming the field, instead of failing deep
inside as INTERNAL (or, for a 10 KB thread id over Postgres' index row limit, as a misleading
UNAVAILABLE that a retrying client would repeat forever)."""

from __future__ import annotations

import math

import grpc
from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from graphmesh.errors import InvalidArgument
from graphmesh.rpc.handlers import run_before

MAX_DEPTH = 64
# Text fields of graphmesh's own messages (not the values inside a Struct, which the input
# size limit covers): ids, names, keys, tokens and versions are at most MAX_ID_CHARS; free
# text a person writes (reasons, comments) at most MAX_TEXT_CHARS; metadata values at most
# MAX_METADATA_VALUE_CHARS (and all of it together at most the api's metadata byte limit).
MAX_ID_CHARS = 256
MAX_TEXT_CHARS = 4096
MAX_METADATA_VALUE_CHARS = 4096
TEXT_FIELDS = frozenset({"reason", "comment", "description"})
# A webhook's URL: query strings make real ones longer than an id (graphmesh/webhooks/targets.py).
MAX_URL_CHARS = 2048
_UNPARSABLE = object()


class ValidationInterceptor(grpc.aio.ServerInterceptor):
    """Innermost: runs after authentication. A body that does not parse reaches the
    behaviour as a marker (grpc would otherwise answer UNKNOWN before any of our code ran)."""

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse = handler.request_deserializer

        def lenient(data: bytes):
            try:
                return parse(data)
            except Exception:  # DecodeError, or nesting beyond protobuf's recursion limit
                return _UNPARSABLE

        async def validate(request, context) -> None:
            if request is _UNPARSABLE:
                raise InvalidArgument(f"the request body is not a valid message for {details.method}",
                                      code="MALFORMED_REQUEST")
            check_request(request)

        return run_before(handler, validate, request_deserializer=lenient)


def check_request(message: Message) -> None:
    _check(message, message.DESCRIPTOR.name, 0)


def _check(message: Message, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"{path}: nested more than {MAX_DEPTH} levels deep", code="TOO_DEEP")
    if isinstance(message, struct_pb2.Value):
        kind = message.WhichOneof("kind")
        if kind == "number_value" and not math.isfinite(message.number_value):
            raise InvalidArgument(f"{path}: numbers must be finite (JSON has no NaN or Infinity)",
                                  code="INVALID_NUMBER")
    # Only graphmesh's own fields have length limits; a Struct's keys and strings are input.
    ours = message.DESCRIPTOR.full_name.startswith("graphmesh.")
    for field, value in message.ListFields():
        where = f"{path}.{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                _text(key, f"{where}[key]", MAX_ID_CHARS if ours else None)
                _value(value_field, item, f"{where}[{key!r:.40}]", depth,
                       MAX_METADATA_VALUE_CHARS if ours else None)
        elif field.is_repeated:
            for i, item in enumerate(value):
                _value(field, item, f"{where}[{i}]", depth, _limit(field) if ours else None)
        else:
            _value(field, value, where, depth, _limit(field) if ours else None)


def _limit(field: FieldDescriptor) -> int:
    if field.name == "url":
        return MAX_URL_CHARS
    return MAX_TEXT_CHARS if field.name in TEXT_FIELDS else MAX_ID_CHARS


def _value(field: FieldDescriptor, value, where: str, depth: int, limit: int | None = None) -> None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        _check(value, where, depth + 1)
    elif field.type == FieldDescriptor.TYPE_STRING:
        _text(value, where, limit)
    elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT) and not math.isfinite(value):
        raise InvalidArgument(f"{where}: numbers must be finite", code="INVALID_NUMBER")


def _text(value: str, where: str, limit: int | None = None) -> None:
    if limit is not None and len(value) > limit:
        raise InvalidArgument(f"{where}: at most {limit} characters, not {len(value)}", code="FIELD_TOO_LONG")
    if "\x00" in value:
        raise InvalidArgument(f"{where}: text must not contain NUL (0x00) characters", code="NUL_CHARACTER")
