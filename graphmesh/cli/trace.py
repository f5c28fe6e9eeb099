"""`graphmesh trace RUN_ID`: a run's trace (RunService.GetRunTrace) as a waterfall."""

from __future__ import annotations

import argparse

from graphmesh.cli.render import as_json
from graphmesh.client import api_client
from graphmesh.v1 import run_service_pb2 as pb

BAR_WIDTH = 40
# Attributes worth a glance in the waterfall; the rest are in --json.
SHOWN = ("graphmesh.node", "graphmesh.status", "graphmesh.decision", "graphmesh.approvals", "graphmesh.step",
         "rpc.grpc.status_code")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("trace", help="a run's trace across api, workers and review, as a waterfall")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    p.set_defaults(func=show_trace)


def show_trace(args) -> int:
    reply = api_client(args.api).runs.GetRunTrace(pb.GetRunTraceRequest(run_id=args.run_id), timeout=30)
    print(as_json(reply) if args.json else waterfall(reply))
    return 0


def waterfall(reply: pb.GetRunTraceResponse) -> str:
    spans = list(reply.spans)
    if not spans:
        return f"trace {reply.trace_id}: no spans recorded yet"
    start = min(s.start_unix_nano for s in spans)
    end = max(s.end_unix_nano for s in spans)
    total = max(end - start, 1)
    services = sorted({s.service for s in spans})
    lines = [f"trace {reply.trace_id}  {len(spans)} spans  {(end - start) / 1e6:.1f} ms  "
             f"services: {', '.join(services)}"]
    for s in spans:
        left = int((s.start_unix_nano - start) / total * BAR_WIDTH)
        width = max(1, int((s.end_unix_nano - s.start_unix_nano) / total * BAR_WIDTH))
        bar = " " * left + "█" * min(width, BAR_WIDTH - left) + " " * max(0, BAR_WIDTH - left - width)
        extra = "  ".join(f"{k.split('.')[-1]}={s.attributes[k]}" for k in SHOWN if k in s.attributes)
        flag = " ERROR" + (f" ({s.status_message})" if s.status_message else "") if s.status == "ERROR" else ""
        lines.append(f"{(s.start_unix_nano - start) / 1e6:9.1f} ms |{bar}| {(s.end_unix_nano - s.start_unix_nano) / 1e6:8.1f} ms  "
                     f"{s.service.removeprefix('graphmesh-'):<7} {'  ' * s.depth}{s.name}{flag}"
                     + (f"  [{extra}]" if extra else ""))
    return "\n".join(lines)
