"""The demo run `graphmesh up --demo` performs: a research run with streamed progress."""

from __future__ import annotations

from google.protobuf import struct_pb2

from graphmesh.cli.render import run_details
from graphmesh.cli.runs import follow
from graphmesh.client import api_client
from graphmesh.v1 import run_service_pb2 as pb

DEMO_INPUT = {"question": "How do LangGraph checkpoints make runs durable?"}


def run_demo(api_address: str) -> int:
    client = api_client(api_address)
    graph_input = struct_pb2.Struct()
    graph_input.update(DEMO_INPUT)
    run = client.runs.CreateRun(pb.CreateRunRequest(graph="research_assistant", input=graph_input)).run
    print(f"\ndemo: research_assistant run {run.run_id}\n")
    code = follow(client, run.run_id, 0, as_json_lines=False)
    final = client.runs.GetRun(pb.GetRunRequest(run_id=run.run_id)).run
    print("\n" + run_details(final))
    state = client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=final.thread_id))
    report = state.values.fields.get("report")
    if report is not None:
        print("\nreport:\n" + report.string_value)
    return code
