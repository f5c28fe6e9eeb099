"""Argument helpers shared by the CLI's command groups."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from typing import Callable

from google.protobuf import struct_pb2

from graphmesh.rpc.principal import PRINCIPAL_KEY


def default_principal() -> str:
    """Who the CLI acts as: GRAPHMESH_PRINCIPAL, else the OS user name."""
    if os.environ.get("GRAPHMESH_PRINCIPAL"):
        return os.environ["GRAPHMESH_PRINCIPAL"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return "anonymous"


def principal_metadata(principal: str | None) -> list[tuple[str, str]]:
    return [(PRINCIPAL_KEY, principal or default_principal())]


def json_object(text: str, option: str) -> struct_pb2.Struct:
    """A JSON object given inline or as @file, or a clean exit naming the option."""
    try:
        if text.startswith("@"):
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        value = json.loads(text)
    except OSError as exc:
        raise SystemExit(f"error: cannot read {option} file: {exc}") from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: {option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"error: {option} must be a JSON object")
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def whole_number(minimum: int = 0) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value
    return parse
