"""Human-readable and JSON rendering of runs and events for the CLI."""

from __future__ import annotations

import json

from google.protobuf import json_format

from graphmesh.jsonvalues import whole_numbers
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
    if run.HasField("run_after"):
        lines.append(f"starts     not before {run.run_after.ToDatetime():%Y-%m-%d %H:%M:%S}")
    if run.HasField("finished_at"):
        took = run.finished_at.ToDatetime() - run.created_at.ToDatetime()
        lines.append(f"finished   {run.finished_at.ToDatetime():%Y-%m-%d %H:%M:%S}  ({took.total_seconds():.2f} s)")
    if run.error.code:
        lines.append(f"error      {run.error.code}: {run.error.message}" + (f" (node {run.error.node})" if run.error.node else ""))
    if run.metadata:
        lines.append("metadata   " + ", ".join(f"{k}={v}" for k, v in sorted(run.metadata.items())))
    return "\n".join(lines)


def plain_dict(struct) -> dict:
    """A Struct as a plain dict, whole numbers as integers."""
    return whole_numbers(json_format.MessageToDict(struct))


def json_block(value, indent: str = "  ") -> str:
    """A value as indented JSON, for the human-readable output of state and outputs."""
    return "\n".join(indent + line for line in json.dumps(value, indent=2, sort_keys=True).splitlines())


def thread_state_details(state) -> str:
    """GetThreadState for `graphmesh threads state`: where the thread stands and who wrote it."""
    meta = plain_dict(state.checkpoint_metadata)
    versions = ", ".join(f"{label} {meta[key]}" for key, label in (
        ("state_schema_version", "schema"), ("prompt_version", "prompt"), ("model_route", "model"),
        ("tool_version", "tools")) if key in meta)
    written = meta.get("graph", "?") + (f"@{meta['graph_version']}" if "graph_version" in meta else "")
    lines = [
        f"thread     {state.thread_id}",
        f"checkpoint {state.checkpoint_id or '-'}",
        f"written by {written}" + (f"  ({versions})" if versions else ""),
        f"run        {meta.get('gm_run_id') or '-'}" + (f"  (attempt {meta['gm_attempt']})" if meta.get("gm_attempt")
                                                       else ""),
        f"next       {', '.join(state.next) or '- (at rest)'}",
        f"active run {state.active_run_id or '-'}",
        "values",
        json_block(plain_dict(state.values)),
    ]
    return "\n".join(lines)


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
            text = f"    [{bar:<20}] {pct:3.0f}%  " + " ".join(f"{k}={whole_numbers(v)}" for k, v in rest.items())
        else:
            text = f"    {body.node}: {json.dumps(data)}"
    elif kind == "approval_requested":
        text = f"  ? approval requested at {body.node}: {json.dumps(json_format.MessageToDict(body.payload))}"
    else:
        text = f"{kind}: {json_format.MessageToDict(body)}"
    return f"{seq} {text}"


# -- approvals and audit -------------------------------------------------------------------


def _review_pb():
    # Imported here so that the run commands do not load the review protos.
    from graphmesh.v1 import review_service_pb2
    return review_service_pb2


def _when(ts, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A Timestamp in UTC, or "-" when it is not set."""
    if ts.seconds == 0 and ts.nanos == 0:
        return "-"
    return f"{ts.ToDatetime():{fmt}}"


def when_utc(ts) -> str:
    """A Timestamp as "YYYY-MM-DD HH:MM:SSZ", or "-" when it is not set."""
    return _when(ts, "%Y-%m-%d %H:%M:%SZ")


def _compact(value) -> str:
    return json.dumps(whole_numbers(value), sort_keys=True, separators=(",", ":"))


def approval_status_name(value: int) -> str:
    return _review_pb().ApprovalStatus.Name(value).removeprefix("APPROVAL_STATUS_")


def decision_kind_name(value: int) -> str:
    return _review_pb().DecisionKind.Name(value).removeprefix("DECISION_KIND_")


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths[:-1])) + "  " + cells[-1]

    return "\n".join([line(headers)] + [line(r) for r in rows])


APPROVAL_COLUMNS = ["APPROVAL", "STATUS", "GRAPH", "NODE", "RUN", "ROLE", "CREATED", "EXPIRES", "DECIDED BY"]


def approval_row(approval) -> list[str]:
    decided_by = approval.decision.reviewer if approval.HasField("decision") else ""
    return [approval.approval_id, approval_status_name(approval.status),
            f"{approval.graph}@{approval.graph_version}", approval.node, approval.run_id,
            approval.required_role or "-", _when(approval.created_at), _when(approval.expires_at), decided_by or "-"]


def approvals_table(approvals) -> str:
    return table(APPROVAL_COLUMNS, [approval_row(a) for a in approvals])


def approval_details(approval) -> str:
    lines = [
        f"approval   {approval.approval_id}",
        f"status     {approval_status_name(approval.status)}",
        f"graph      {approval.graph}@{approval.graph_version}",
        f"node       {approval.node}" + (f"  (interrupt {approval.interrupt_id})" if approval.interrupt_id else ""),
        f"run        {approval.run_id}",
        f"thread     {approval.thread_id}",
        f"role       {approval.required_role or '-'}",
        f"created    {_when(approval.created_at)}",
        f"expires    {_when(approval.expires_at)}",
    ]
    payload = json_format.MessageToDict(approval.payload)
    lines.append("payload")
    lines.extend("  " + line for line in json.dumps(payload, indent=2, sort_keys=True).splitlines())
    if approval.HasField("decision"):
        d = approval.decision
        lines.append(f"decision   {decision_kind_name(d.kind)} by {d.reviewer or '-'} at {_when(d.decided_at)}")
        if d.comment:
            lines.append(f"comment    {d.comment}")
        if d.HasField("edited_value"):
            lines.append("edited value")
            edited = json_format.MessageToDict(d.edited_value)
            lines.extend("  " + line for line in json.dumps(edited, indent=2, sort_keys=True).splitlines())
    else:
        lines.append("decision   -")
    return "\n".join(lines)


def approval_event_line(event) -> str:
    kind = event.WhichOneof("kind") or "event"
    label = {"pending_snapshot": "pending"}.get(kind, kind)
    a = event.approval
    text = (f"#{event.sequence:<4} {label:<9} {a.approval_id}  {approval_status_name(a.status):<9} "
            f"{a.graph}@{a.graph_version}  node {a.node}  run {a.run_id}")
    if a.HasField("decision") and kind == "decided":
        d = a.decision
        text += f"  {decision_kind_name(d.kind).lower()} by {d.reviewer or '-'}"
        if d.comment:
            text += f": {json.dumps(d.comment)}"
    else:
        summary = json_format.MessageToDict(a.payload).get("summary")
        if isinstance(summary, str) and summary:
            text += f"  {json.dumps(summary)}"
    return text


AUDIT_COLUMNS = ["TIME", "ACTOR", "ACTION", "APPROVAL", "RUN", "DETAILS"]


def audit_row(record) -> list[str]:
    details = {k: v for k, v in json_format.MessageToDict(record.details).items() if v not in (None, "", {}, [])}
    return [_when(record.time, "%Y-%m-%d %H:%M:%S.%f")[:-3] if record.time.seconds else "-", record.actor,
            record.action, record.approval_id or "-", record.run_id or "-", _compact(details) if details else ""]


def audit_table(records) -> str:
    return table(AUDIT_COLUMNS, [audit_row(r) for r in records])


# -- graphs and workers --------------------------------------------------------------------


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _age(ts) -> str:
    """How long ago a Timestamp was, e.g. "3s ago"; "-" when it is not set."""
    if ts.seconds == 0 and ts.nanos == 0:
        return "-"
    from datetime import datetime, timezone

    seconds = max((datetime.now(timezone.utc) - ts.ToDatetime(tzinfo=timezone.utc)).total_seconds(), 0.0)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def _graph_nodes(graph) -> list[str]:
    """Every node of every version, in the order they first appear."""
    seen: dict[str, None] = {}
    for version in graph.versions:
        seen.update(dict.fromkeys(version.nodes))
    return list(seen)


GRAPH_COLUMNS = ["GRAPH", "VERSIONS", "SYNC", "NODES", "DISABLED NODES"]


def graph_row(graph) -> list[str]:
    versions = ", ".join(f"{v.versions.graph_version} ({v.weight}%)" for v in graph.versions) or "-"
    eligible = [v.versions.graph_version for v in graph.versions if v.sync_eligible]
    if not eligible:
        sync = "no"
    elif len(eligible) == len(graph.versions):
        sync = "yes"
    else:
        sync = ", ".join(eligible)
    disabled = ", ".join(d.node for d in graph.disabled_nodes) or "-"
    return [graph.name, versions, sync, str(len(_graph_nodes(graph))), disabled]


def graphs_table(graphs) -> str:
    return table(GRAPH_COLUMNS, [graph_row(g) for g in graphs])


def disabled_node_line(d) -> str:
    return f"{d.node}  by {d.disabled_by or '-'} at {_when(d.disabled_at)}  reason: {d.reason}"


def graph_details(graph) -> str:
    lines = [f"graph      {graph.name}"]
    if graph.description:
        lines.append(f"about      {graph.description}")
    for v in graph.versions:
        vs = v.versions
        lines += [
            f"version    {vs.graph_version}  weight {v.weight}%  sync {_yes(v.sync_eligible)}",
            f"  versions schema {vs.state_schema_version}, prompt {vs.prompt_version}, model {vs.model_route}, "
            f"tools {vs.tool_version}",
            f"  nodes    {', '.join(v.nodes) or '-'}",
            f"  workers  {', '.join(v.workers) or '-'}",
            f"  runs     {v.runs_queued} queued, {v.runs_running} running, {v.runs_waiting} waiting, "
            f"{v.runs_paused} paused",
        ]
    if graph.disabled_nodes:
        lines.append("disabled nodes")
        lines.extend("  " + disabled_node_line(d) for d in graph.disabled_nodes)
    else:
        lines.append("disabled nodes  -")
    return "\n".join(lines)


WORKER_COLUMNS = ["WORKER", "ADDRESS", "ACTIVE", "DRAINING", "GRAPHS", "STARTED", "LAST SEEN"]


def _loaded(graphs) -> str:
    return ", ".join(f"{g.graph}@{g.graph_version}" for g in graphs) or "-"


def worker_row(worker) -> list[str]:
    return [worker.worker_id, worker.address, f"{worker.active_runs}/{worker.capacity}", _yes(worker.draining),
            _loaded(worker.graphs), _when(worker.started_at), _age(worker.last_seen)]


def workers_table(workers) -> str:
    return table(WORKER_COLUMNS, [worker_row(w) for w in workers])


def worker_status_details(status) -> str:
    lines = [
        f"worker     {status.worker_id}",
        f"draining   {_yes(status.draining)}",
        f"active     {len(status.active_runs)}/{status.capacity}",
        f"completed  {status.runs_completed}",
        f"started    {_when(status.started_at)}",
        f"graphs     {_loaded(status.graphs)}",
    ]
    for run in status.active_runs:
        lines.append(f"  run {run.run_id}  {run.graph}@{run.graph_version}  thread {run.thread_id}  "
                     f"since {_when(run.started_at)}")
    return "\n".join(lines)


def previous_errors_lines(run) -> list[str]:
    """The errors of a run's earlier attempts, oldest first, for `runs retry|resume`."""
    return [f"attempt {i}  {e.code}: {e.message}" + (f" (node {e.node})" if e.node else "")
            for i, e in enumerate(run.previous_errors, start=1)]
