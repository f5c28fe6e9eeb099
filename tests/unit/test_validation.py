"""Request validation at the edge (graphmesh/rpc/validation.py)."""

from __future__ import annotations

import math

import pytest
from google.protobuf import struct_pb2

from graphmesh.errors import InvalidArgument
from graphmesh.rpc.validation import check_request
from graphmesh.v1 import review_service_pb2 as rpb
from graphmesh.v1 import run_service_pb2 as pb


def _code(request) -> str:
    with pytest.raises(InvalidArgument) as err:
        check_request(request)
    return err.value.code


def test_ordinary_requests_pass():
    request = pb.CreateRunRequest(graph="tiny", thread_id="t", metadata={"k": "v"})
    request.input.update({"text": "hello", "n": 3, "nested": {"list": [1, 2.5, "x", None, True]}})
    check_request(request)
    check_request(pb.ListRunsRequest(statuses=[1, 2], graph="tiny"))


def test_nul_characters_are_refused_wherever_they_are():
    assert _code(pb.ListRunsRequest(graph="a\x00b")) == "NUL_CHARACTER"
    assert _code(pb.CreateRunRequest(graph="tiny", metadata={"k\x00": "v"})) == "NUL_CHARACTER"
    deep = pb.CreateRunRequest(graph="tiny")
    deep.input.update({"a": {"b": ["ok", "no\x00"]}})
    assert _code(deep) == "NUL_CHARACTER"


def test_numbers_must_be_finite():
    for value in (math.nan, math.inf, -math.inf):
        request = rpb.DecideRequest(approval_id="x", edited_value=struct_pb2.Struct(
            fields={"amount": struct_pb2.Value(number_value=value)}))
        assert _code(request) == "INVALID_NUMBER"


def test_absurd_nesting_is_refused():
    value: dict = {}
    for _ in range(40):
        value = {"v": value}
    request = pb.CreateRunRequest(graph="tiny")
    request.input.update(value)
    assert _code(request) == "TOO_DEEP"
