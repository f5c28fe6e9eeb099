"""What the browser tests share: the principals, the mesh handle, signing in."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import struct_pb2

from graphmesh.client import api_client, review_stub
from graphmesh.v1 import run_service_pb2 as pb
from helpers import wait_for

CHROMIUM = os.environ.get("GRAPHMESH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Screenshots land here; GRAPHMESH_UPDATE_SCREENSHOTS=1 writes the README's ones under docs/.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "images"

# Principals of these tests: an admin that creates runs, a reviewer, a reviewer without the
# finance role, and a submitter who may not review at all.
PRINCIPALS = {
    "ada": ["admin"],
    "rita": ["reviewer", "finance"],
    "lee": ["reviewer"],
    "sam": ["submitter"],
}


@dataclass
class ReviewMesh:
    mesh: object
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.mesh.review_page_url

    def create_run(self, graph: str, graph_input: dict, *, as_: str = "ada") -> pb.Run:
        body = struct_pb2.Struct()
        body.update(graph_input)
        client = api_client(self.mesh.api_address, token=self.tokens[as_])
        try:
            return client.runs.CreateRun(pb.CreateRunRequest(graph=graph, input=body), timeout=10).run
        finally:
            client.close()

    def run(self, run_id: str) -> pb.Run:
        client = api_client(self.mesh.api_address, token=self.tokens["ada"])
        try:
            return client.runs.GetRun(pb.GetRunRequest(run_id=run_id), timeout=10).run
        finally:
            client.close()

    def thread_values(self, thread_id: str) -> dict:
        from google.protobuf import json_format

        client = api_client(self.mesh.api_address, token=self.tokens["ada"])
        try:
            state = client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=thread_id), timeout=10)
            return json_format.MessageToDict(state.values)
        finally:
            client.close()

    def review(self, as_: str = "ada"):
        return review_stub(self.mesh.review_address, token=self.tokens[as_])

    def approval_of(self, run_id: str, *, node: str = "") -> str:
        """The id of the run's pending approval (at `node`), once it exists."""
        from graphmesh.v1 import review_service_pb2 as rpb

        def find():
            listed = self.review().ListApprovals(rpb.ListApprovalsRequest(run_id=run_id), timeout=10).approvals
            return next((a.approval_id for a in listed if not node or a.node == node), None)
        return wait_for(find, 30, message=f"an approval of run {run_id}")




def sign_in(page, review_mesh: ReviewMesh, who: str, path: str = "/") -> None:
    page.goto(review_mesh.url.rstrip("/") + path)
    page.get_by_label("graphmesh token or JWT").fill(review_mesh.tokens[who])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"Signed in as {who}").wait_for()
