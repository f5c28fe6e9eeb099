"""Converting graph state (arbitrary Python) to JSON and protobuf Struct/Value."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from enum import Enum
from typing import Any

from google.protobuf import json_format, struct_pb2


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of `value`; unknown objects become their readable form."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return jsonable(value.value)
    if hasattr(value, "model_dump"):  # pydantic models, LangChain messages
        return jsonable(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return repr(value)


def to_struct(value: Any) -> struct_pb2.Struct:
    data = jsonable(value)
    struct = struct_pb2.Struct()
    if isinstance(data, dict):
        struct.update(data)
    elif data is not None:
        struct.update({"value": data})
    return struct


def to_value(value: Any) -> struct_pb2.Value:
    out = struct_pb2.Value()
    json_format.ParseDict(jsonable(value), out)
    return out



def whole_numbers(value: Any) -> Any:
    """`value` with whole doubles as ints, recursively. A protobuf Struct or Value keeps every
    number as a double, so 3 comes back as 3.0; JSON cannot tell them apart, but a graph or a
    Python client would. Beyond 2**53 a double is no longer exact: those stay floats."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    return value


def from_proto(message: Any) -> Any:
    """A Struct, Value or ListValue as plain JSON, whole numbers as ints."""
    return whole_numbers(json_format.MessageToDict(message))


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values: true is not 1, but 1.0 is 1 (protobuf Values carry doubles)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
