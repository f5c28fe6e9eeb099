"""`graphmesh assistants list|get|create|delete` (AssistantService): LangGraph's assistants,
a graph with a stored configuration; every graph has a system assistant named after it."""

from __future__ import annotations

import argparse

from graphmesh.cli.args import json_object, principal_metadata
from graphmesh.cli.render import as_json, json_block, plain_dict, when_utc
from graphmesh.client import api_client
from graphmesh.v1 import assistant_service_pb2 as pb
from graphmesh.v1 import assistant_service_pb2_grpc

SORTS = {"created_at": pb.ASSISTANT_SORT_BY_CREATED_AT, "updated_at": pb.ASSISTANT_SORT_BY_UPDATED_AT,
         "name": pb.ASSISTANT_SORT_BY_NAME, "graph": pb.ASSISTANT_SORT_BY_GRAPH,
         "assistant_id": pb.ASSISTANT_SORT_BY_ASSISTANT_ID}
IF_EXISTS = {"raise": pb.ASSISTANT_IF_EXISTS_RAISE, "do_nothing": pb.ASSISTANT_IF_EXISTS_DO_NOTHING}
TIMEOUT = 30


def add_parser(subparsers) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    assistants = subparsers.add_parser("assistants", help="graphs with a stored configuration (LangGraph's "
                                                          "assistants)").add_subparsers(
        dest="assistants_command", required=True)

    ls = assistants.add_parser("list", help="assistants newest first (or as sorted)", parents=[common])
    ls.add_argument("--graph", default="")
    ls.add_argument("--name", default="", help="a part of the name (any case)")
    ls.add_argument("--metadata", default=None, metavar="JSON", help="assistants whose metadata contains this object")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--offset", type=int, default=0)
    ls.add_argument("--sort", choices=sorted(SORTS), default="created_at")
    ls.add_argument("--asc", action="store_true", help="ascending (default: newest / highest first)")
    ls.set_defaults(func=list_assistants)

    get = assistants.add_parser("get", help="an assistant by id, or a graph's system assistant by the graph's name",
                                parents=[common])
    get.add_argument("assistant_id", metavar="ASSISTANT_ID|GRAPH")
    get.set_defaults(func=get_assistant)

    create = assistants.add_parser("create", help="an assistant of a graph", parents=[common])
    create.add_argument("graph")
    create.add_argument("--id", dest="assistant_id", default="", help="a UUID (default: a new one)")
    create.add_argument("--name", default="")
    create.add_argument("--description", default="")
    create.add_argument("--config", default=None, metavar="JSON",
                        help='e.g. {"configurable": {...}, "tags": [...], "recursion_limit": 10} (or @file.json)')
    create.add_argument("--context", default=None, metavar="JSON", help="the graph's runtime context (or @file.json)")
    create.add_argument("--metadata", default=None, metavar="JSON", help="a JSON object (or @file.json)")
    create.add_argument("--if-exists", choices=sorted(IF_EXISTS), default="raise",
                        help="when the id is taken: fail (raise) or show the existing assistant (do_nothing)")
    create.add_argument("--as", dest="principal", default=None,
                        help="its owner, on a mesh without authentication (default: your user name); "
                             "with a token, the token's principal")
    create.set_defaults(func=create_assistant)

    delete = assistants.add_parser("delete", help="delete an assistant (never a system one)", parents=[common])
    delete.add_argument("assistant_id")
    delete.set_defaults(func=delete_assistant)


def _stub(args) -> assistant_service_pb2_grpc.AssistantServiceStub:
    return assistant_service_pb2_grpc.AssistantServiceStub(api_client(args.api).channel)


def list_assistants(args) -> int:
    request = pb.ListAssistantsRequest(graph=args.graph, name=args.name, limit=args.limit, offset=args.offset,
                                       sort_by=SORTS[args.sort], ascending=args.asc)
    if args.metadata is not None:
        request.metadata.CopyFrom(json_object(args.metadata, "--metadata"))
    response = _stub(args).ListAssistants(request, timeout=TIMEOUT)
    if args.json:
        print(as_json(response))
        return 0
    for assistant in response.assistants:
        print(assistant_line(assistant))
    if response.has_more:
        print(f"more: --offset {args.offset + args.limit}")
    return 0


def get_assistant(args) -> int:
    assistant = _stub(args).GetAssistant(pb.GetAssistantRequest(assistant_id=args.assistant_id),
                                         timeout=TIMEOUT).assistant
    print(as_json(assistant) if args.json else assistant_details(assistant))
    return 0


def create_assistant(args) -> int:
    request = pb.CreateAssistantRequest(assistant_id=args.assistant_id, graph=args.graph, name=args.name,
                                        description=args.description, if_exists=IF_EXISTS[args.if_exists])
    for option in ("config", "context", "metadata"):
        text = getattr(args, option)
        if text is not None:
            getattr(request, option).CopyFrom(json_object(text, f"--{option}"))
    reply = _stub(args).CreateAssistant(request, timeout=TIMEOUT, metadata=principal_metadata(args.principal))
    if args.json:
        print(as_json(reply))
    else:
        print(("created\n" if reply.created else "exists already\n") + assistant_details(reply.assistant))
    return 0


def delete_assistant(args) -> int:
    _stub(args).DeleteAssistant(pb.DeleteAssistantRequest(assistant_id=args.assistant_id), timeout=TIMEOUT)
    print("{}" if args.json else f"deleted assistant {args.assistant_id}")
    return 0


# -- rendering -----------------------------------------------------------------------------

def assistant_line(a: pb.Assistant) -> str:
    return (f"{a.assistant_id}  {a.graph:<20} {a.name}  v{a.version}{'  (system)' if a.system else ''}  "
            f"{when_utc(a.created_at)}")


def assistant_details(a: pb.Assistant) -> str:
    lines = [
        f"assistant  {a.assistant_id}" + ("  (system: the graph's own)" if a.system else ""),
        f"graph      {a.graph}",
        f"name       {a.name}",
        f"version    {a.version}",
        f"created    {when_utc(a.created_at)}",
        f"updated    {when_utc(a.updated_at)}",
    ]
    if a.description:
        lines.append(f"about      {a.description}")
    for label, struct in (("config", a.config), ("context", a.context), ("metadata", a.metadata)):
        if struct.fields:
            lines += [label, json_block(plain_dict(struct))]
    return "\n".join(lines)
