"""Human-readable and JSON rendering of runs and events for the CLI."""

from __future__ import annotations

import json

from google.protobuf import json_format

from graphmesh.v1 import run_pb2


def as_json(message) -> str:
    return json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True), sort_keys=True)


def status_name(value: int) -> str:
    return run_pb2.RunStatus.Name(value).removeprefix("RUN_STATUS_")


def run_line(run: run_pb2.Run) -> str:
    error = f"  {run.error.code}: {run.error.message}" if run.error.code else ""
    return (f"{run.run_id}  {status_name(run.status):<20} {run.graph}@{run.versions.graph_version}"
            f"  thread {run.thread_id}  {run.created_at.ToDatetime():%Y-%m-%d %H:%M:%S}{error}")


def run_details(run: run_pb2.Run) -> str:
    v = run.versions
    lines = [
        f"run        {run.run_id}",
        f"status     {status_name(run.status)}",
        f"graph      {run.graph}  (graph {v.graph_version}, schema {v.state_schema_version}, "
        f"prompt {v.prompt_version}, model {v.model_route}, tools {v.tool_version})",
        f"thread     {run.thread_id}",
        f"attempt    {run.attempt}",
        f"created    {run.created_at.ToDatetime():%Y-%m-%d %H:%M:%S.%f}"[:-3],
    ]
    if run.HasField("finished_at"):
        took = run.finished_at.ToDatetime() - run.created_at.ToDatetime()
        lines.append(f"finished   {run.finished_at.ToDatetime():%Y-%m-%d %H:%M:%S}  ({took.total_seconds():.2f} s)")
    if run.error.code:
        lines.append(f"error      {run.error.code}: {run.error.message}" + (f" (node {run.error.node})" if run.error.node else ""))
    if run.metadata:
        lines.append("metadata   " + ", ".join(f"{k}={v}" for k, v in sorted(run.metadata.items())))
    return "\n".join(lines)


def _plain(value):
    # Struct carries every number as a double; show whole numbers as integers.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def event_line(event: run_pb2.RunEvent) -> str:
    kind = event.WhichOneof("kind")
    body = getattr(event, kind)
    seq = f"#{event.sequence:<3}"
    if kind == "status_changed":
        text = f"status  {status_name(body.status)}"
        if body.error.code:
            text += f"  {body.error.code}: {body.error.message}"
    elif kind == "node_started":
        text = f"  > {body.node}"
    elif kind == "node_finished":
        keys = ", ".join(sorted(body.update.keys()))
        text = f"  ok {body.node}" + (f"  (updated {keys})" if keys else "")
    elif kind == "custom":
        data = json_format.MessageToDict(body.data)
        if isinstance(data, dict) and "progress" in data:
            pct = float(data.get("progress") or 0) * 100
            bar = "#" * int(pct / 5)
            rest = {k: v for k, v in data.items() if k not in ("progress",)}
            text = f"    [{bar:<20}] {pct:3.0f}%  " + " ".join(f"{k}={_plain(v)}" for k, v in rest.items())
        else:
            text = f"    {body.node}: {json.dumps(data)}"
    elif kind == "approval_requested":
        text = f"  ? approval requested at {body.node}: {json.dumps(json_format.MessageToDict(body.payload))}"
    else:
        text = f"{kind}: {json_format.MessageToDict(body)}"
    return f"{seq} {text}"
