"""`graphmesh approvals ...` and `graphmesh audit` as a reviewer or a script would use them,
against the real mesh."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

import pytest

from graphmesh.client import api_client, review_stub
from graphmesh.mesh import REPO_ROOT
from graphmesh.v1 import review_service_pb2 as rpb
from graphmesh.v1 import run_service_pb2 as pb
from helpers import COMPLETED, WAITING, create_run, new_thread, to_dict, wait_for, wait_status

CLI = [sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())"]
REFUND = {"action": "refund", "target": "order-1", "amount": 10}


@pytest.fixture(scope="module")
def client(mesh):
    c = api_client(mesh.api_address)
    yield c
    c.close()


@pytest.fixture(scope="module")
def review(mesh):
    return review_stub(mesh.review_address)


@pytest.fixture(scope="module")
def cli_args(mesh):
    return [*CLI, "--api", mesh.api_address]


@pytest.fixture(scope="module")
def gm(mesh, cli_args):
    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        # --review goes after the group name (`approvals --review X list`) or after a
        # subcommand (`audit --review X`); insert it right after the first word.
        argv = [args[0], "--review", mesh.review_address, *args[1:]]
        return subprocess.run([*cli_args, *argv], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    return run


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def _json(result: subprocess.CompletedProcess):
    return json.loads(_ok(result).stdout)


def _waiting_run(client, review, inputs: dict | None = None) -> tuple[str, str]:
    """Creates an approval_workflow run, waits until it waits; returns (run id, approval id)."""
    run = create_run(client, "approval_workflow", inputs or REFUND, thread_id=new_thread("cli-approval"))
    wait_status(client, run.run_id, WAITING)
    approvals = review.ListApprovals(rpb.ListApprovalsRequest(run_id=run.run_id), timeout=10).approvals
    assert len(approvals) == 1, approvals
    return run.run_id, approvals[0].approval_id


def _thread_values(client, run_id: str) -> dict:
    run = client.runs.GetRun(pb.GetRunRequest(run_id=run_id), timeout=10).run
    return to_dict(client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=run.thread_id), timeout=10).values)


class _Watcher:
    """`graphmesh approvals watch ...` in the background, its stdout lines collected (and its
    stderr drained: a full, unread pipe would block the process where it writes)."""

    def __init__(self, argv: list[str]) -> None:
        # SIGINT at its default in the child: a test run started in the background of a
        # non-interactive shell inherits SIGINT ignored, and the watch would never see Ctrl-C.
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, into), daemon=True)
                         for stream, into in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def events(self) -> list[dict]:
        return [json.loads(line) for line in list(self.lines)]

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the watch did not end within {timeout}s of signal {sig}; its stderr:\n"
                                 + "\n".join(self.errors[-40:])) from None
        for reader in self._readers:
            reader.join(5)
        return rc, "\n".join(self.errors)


def test_approve_path(gm, client, review):
    run_id, approval_id = _waiting_run(client, review)

    listed = _json(gm("approvals", "list", "--run", run_id, "--status", "pending", "--json"))
    assert [a["approval_id"] for a in listed["approvals"]] == [approval_id]
    mine = listed["approvals"][0]
    assert mine["status"] == "APPROVAL_STATUS_PENDING" and mine["graph"] == "approval_workflow"
    assert mine["run_id"] == run_id and mine["node"] == "review"
    assert _json(gm("approvals", "list", "--run", run_id, "--status", "approved", "--json")).get("approvals", []) == []
    table = _ok(gm("approvals", "list", "--graph", "approval_workflow", "--status", "pending")).stdout
    assert table.splitlines()[0].split()[:3] == ["APPROVAL", "STATUS", "GRAPH"]
    row = next(line for line in table.splitlines() if line.startswith(approval_id))
    assert "PENDING" in row and "approval_workflow@1" in row and run_id in row

    got = _json(gm("approvals", "get", approval_id, "--json"))
    assert got["approval_id"] == approval_id and got["payload"]["proposed_change"]["target"] == "order-1"
    readable = _ok(gm("approvals", "get", approval_id)).stdout
    assert approval_id in readable and "PENDING" in readable
    assert '"summary": "Refund 10.00 to order-1"' in readable  # the payload, pretty-printed

    decided = _json(gm("approvals", "--as", "alice", "approve", approval_id, "--comment", "looks right", "--json"))
    assert decided["status"] == "APPROVAL_STATUS_APPROVED"
    assert decided["decision"]["reviewer"] == "alice" and decided["decision"]["comment"] == "looks right"
    assert decided["decision"]["kind"] == "DECISION_KIND_APPROVE"
    wait_status(client, run_id, COMPLETED)
    values = _thread_values(client, run_id)
    assert values["applied"] is True and values["reviewer"] == "alice"

    # The same decision again returns the recorded one; --as after the subcommand works too.
    again = _json(gm("approvals", "approve", approval_id, "--as", "alice", "--comment", "looks right", "--json"))
    assert again == decided
    readable = _ok(gm("approvals", "get", approval_id)).stdout
    assert "APPROVED" in readable and "alice" in readable and "looks right" in readable

    conflict = gm("approvals", "reject", approval_id, "--as", "bob")
    assert conflict.returncode == 1, conflict
    assert conflict.stderr.startswith("error: FAILED_PRECONDITION"), conflict.stderr
    assert "Traceback" not in conflict.stderr

    audit = _json(gm("audit", "--run", run_id, "--json"))["records"]
    assert [r["action"] for r in audit] == ["approval_requested", "approval_decided"]
    assert all(r["approval_id"] == approval_id and r["run_id"] == run_id for r in audit)
    assert audit[1]["actor"] == "alice"
    assert audit[1]["details"]["decision"] == "approve" and audit[1]["details"]["comment"] == "looks right"
    by_approval = _json(gm("audit", "--approval", approval_id, "--json"))["records"]
    assert [r["record_id"] for r in by_approval] == [r["record_id"] for r in audit]
    first_page = _json(gm("audit", "--run", run_id, "--limit", "1", "--json"))
    assert [r["record_id"] for r in first_page["records"]] == [audit[0]["record_id"]]
    rest = _json(gm("audit", "--run", run_id, "--page-token", first_page["next_page_token"], "--json"))
    assert [r["record_id"] for r in rest["records"]] == [audit[1]["record_id"]]
    table = _ok(gm("audit", "--run", run_id)).stdout.splitlines()
    assert table[0].split() == ["TIME", "ACTOR", "ACTION", "APPROVAL", "RUN", "DETAILS"]
    assert "approval_requested" in table[1] and "approval_decided" in table[2] and "alice" in table[2]


def test_edit_path(gm, client, review, tmp_path):
    run_id, approval_id = _waiting_run(client, review)

    bad = gm("approvals", "edit", approval_id, "--value", "{amount: 7")
    assert bad.returncode != 0 and "--value is not valid JSON" in bad.stderr and "Traceback" not in bad.stderr
    not_object = gm("approvals", "edit", approval_id, "--value", "[7]")
    assert not_object.returncode != 0 and "must be a JSON object" in not_object.stderr
    missing = gm("approvals", "edit", approval_id, "--value", f"@{tmp_path / 'nope.json'}")
    assert missing.returncode != 0 and "cannot read --value file" in missing.stderr
    assert _json(gm("approvals", "get", approval_id, "--json"))["status"] == "APPROVAL_STATUS_PENDING"

    value = tmp_path / "edit.json"
    value.write_text(json.dumps({"amount": 7.5}))
    edited = _json(gm("approvals", "edit", approval_id, "--value", f"@{value}", "--as", "carol",
                      "--comment", "partial refund", "--json"))
    assert edited["status"] == "APPROVAL_STATUS_EDITED"
    assert edited["decision"]["edited_value"] == {"amount": 7.5} and edited["decision"]["reviewer"] == "carol"
    wait_status(client, run_id, COMPLETED)
    replayed = _json(gm("approvals", "edit", approval_id, "--value", '{"amount": 7.5}', "--as", "carol", "--json"))
    assert replayed == edited
    values = _thread_values(client, run_id)
    assert values["final_change"]["amount"] == 7.5 and values["final_change"]["target"] == "order-1"
    assert values["decision"] == "edited" and values["applied"] is True

    readable = _ok(gm("approvals", "get", approval_id)).stdout
    assert "EDITED" in readable and "carol" in readable and '"amount": 7.5' in readable


def test_reject_path_readable(gm, client, review):
    run_id, approval_id = _waiting_run(client, review)
    out = _ok(gm("approvals", "reject", approval_id, "--as", "dave", "--comment", "no")).stdout
    assert "REJECTED" in out and "dave" in out
    values = _thread_values(client, wait_status(client, run_id, COMPLETED).run_id)
    assert values["approved"] is False and values["final_change"] is None and values["applied"] is False


def test_unknown_approval(gm):
    result = gm("approvals", "get", "00000000-0000-0000-0000-000000000000")
    assert result.returncode == 1 and result.stderr.startswith("error: NOT_FOUND"), result
    result = gm("approvals", "approve", "00000000-0000-0000-0000-000000000000")
    assert result.returncode == 1 and result.stderr.startswith("error: NOT_FOUND"), result


def test_watch_pending_then_ctrl_c(mesh, cli_args, client, review):
    run_id, approval_id = _waiting_run(client, review)
    base = [*cli_args, "approvals", "watch", "--review", mesh.review_address, "--graph", "approval_workflow"]

    # --count 1 --pending: the snapshot comes first, newest pending approval first.
    result = subprocess.run([*base, "--pending", "--count", "1"], capture_output=True, text=True, timeout=60,
                            cwd=REPO_ROOT)
    out = _ok(result).stdout.splitlines()
    assert len(out) == 1 and out[0].split()[1:3] == ["pending", approval_id], out

    # JSON lines; then Ctrl-C ends the watch cleanly.
    watcher = _Watcher([*base, "--pending", "--json"])
    try:
        wait_for(lambda: any(e["approval"]["approval_id"] == approval_id for e in watcher.events()), 30,
                 message="the pending snapshot")
    finally:
        rc, stderr = watcher.stop(signal.SIGINT)
    assert rc == 0 and "Traceback" not in stderr, stderr
    snapshot = next(e for e in watcher.events() if e["approval"]["approval_id"] == approval_id)
    assert snapshot["pending_snapshot"] is True and snapshot["approval"]["status"] == "APPROVAL_STATUS_PENDING"
    review.Decide(rpb.DecideRequest(approval_id=approval_id, kind=rpb.DECISION_KIND_REJECT), timeout=10)


def test_watch_live_and_resume(mesh, cli_args, gm, client, review):
    base = [*cli_args, "approvals", "watch", "--review", mesh.review_address, "--graph", "approval_workflow",
            "--json"]
    # A live watcher sees the request and the decision as they happen. It starts at "now";
    # its pending snapshot (of a guard approval) shows that it has subscribed.
    _, guard = _waiting_run(client, review)
    watcher = _Watcher([*base, "--pending"])
    try:
        wait_for(lambda: any(e["approval"]["approval_id"] == guard for e in watcher.events()), 30,
                 message="the watcher's pending snapshot")
        run_id, approval_id = _waiting_run(client, review)
        _ok(gm("approvals", "approve", approval_id, "--as", "erin"))

        def mine():
            kinds = [next(k for k in ("requested", "decided") if k in e)
                     for e in watcher.events() if e["approval"]["approval_id"] == approval_id]
            return kinds if "decided" in kinds else None

        assert wait_for(mine, 30, message="requested and decided events") == ["requested", "decided"]
    finally:
        rc, stderr = watcher.stop(signal.SIGINT)
    assert rc == 0 and "Traceback" not in stderr, stderr
    events = [e for e in watcher.events() if e["approval"]["approval_id"] == approval_id]
    _ok(gm("approvals", "reject", guard, "--comment", "guard"))
    assert events[1]["approval"]["decision"]["reviewer"] == "erin"

    # A watcher that reconnects after the request's sequence gets the decision it missed.
    after = int(events[0]["sequence"])
    resumed = subprocess.run([*base, "--after", str(after), "--count", "1"], capture_output=True, text=True,
                             timeout=60, cwd=REPO_ROOT)
    _ok(resumed)
    first = json.loads(resumed.stdout.splitlines()[0])
    assert int(first["sequence"]) > after
    readable = subprocess.run([*base[:-1], "--after", str(int(events[1]["sequence"]) - 1), "--count", "1"],
                              capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    line = _ok(readable).stdout.strip()
    assert line.startswith(f"#{events[1]['sequence']}") and "decided" in line and approval_id in line
    assert "approve by erin" in line
