"""The demo run `graphmesh up --demo` performs: a research run with streamed progress that
stops for a reviewer's approval before it publishes its report."""

from __future__ import annotations

from google.protobuf import struct_pb2

from graphmesh.cli.render import run_details
from graphmesh.cli.runs import follow
from graphmesh.client import api_client, review_stub
from graphmesh.v1 import review_service_pb2 as rpb
from graphmesh.v1 import run_service_pb2 as pb

DEMO_INPUT = {"question": "How do LangGraph checkpoints make runs durable?", "review": True}


def run_demo(api_address: str, *, review_address: str, review_page_url: str = "", approve: bool = False) -> int:
    """Creates the demo run and follows it. At its approval it says where to decide it (the
    review page, the CLI); with `approve` (up --exit-after-demo, nobody at the keyboard) it
    approves it itself as the admin."""
    client = api_client(api_address)
    graph_input = struct_pb2.Struct()
    graph_input.update(DEMO_INPUT)
    run = client.runs.CreateRun(pb.CreateRunRequest(graph="research_assistant", input=graph_input)).run
    print(f"\ndemo: research_assistant run {run.run_id}\n")

    def at_approval(event) -> None:
        if event.WhichOneof("kind") != "approval_requested":
            return
        approval_id = event.approval_requested.approval_id
        cli = f"`graphmesh approvals approve {approval_id}` in another terminal"
        where = (f"open {review_page_url}approvals/{approval_id} (sign in with the admin token), or run {cli}"
                 if review_page_url else f"run {cli}")
        print(f"\ndemo: the run waits for a reviewer to approve its report.\n  {where}\n", flush=True)
        if approve:
            review_stub(review_address).Decide(rpb.DecideRequest(
                approval_id=approval_id, kind=rpb.DECISION_KIND_APPROVE, comment="approved by up --exit-after-demo"))
            print("demo: approved it (--exit-after-demo)\n", flush=True)

    code = follow(client, run.run_id, 0, as_json_lines=False, on_event=at_approval)
    final = client.runs.GetRun(pb.GetRunRequest(run_id=run.run_id)).run
    print("\n" + run_details(final))
    state = client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=final.thread_id))
    report = state.values.fields.get("report")
    if report is not None:
        print("\nreport:\n" + report.string_value)
    return code
