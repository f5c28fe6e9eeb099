"""Which roles may call which RPC: deny by default.

The interceptor checks these before a call runs; servicers then check the resource
itself (a submitter sees only its own runs, a reviewer only approvals of graphs it
covers). Admin holds every role.
"""

from __future__ import annotations

SUBMIT = ("submitter", "operator")
SEE_RUNS = ("submitter", "reviewer", "operator")
OPERATE = ("operator",)
REVIEW = ("reviewer",)
REVIEW_OR_OWN = ("reviewer", "submitter")
ANYONE = ("submitter", "reviewer", "operator")

METHOD_ROLES: dict[str, tuple[str, ...]] = {
    "/graphmesh.v1.RunService/CreateRun": SUBMIT,
    "/graphmesh.v1.RunService/InvokeRun": SUBMIT,
    "/graphmesh.v1.RunService/GetRun": SEE_RUNS,
    "/graphmesh.v1.RunService/ListRuns": SEE_RUNS,
    "/graphmesh.v1.RunService/StreamRun": SEE_RUNS,
    "/graphmesh.v1.RunService/GetThreadState": SEE_RUNS,
    "/graphmesh.v1.RunService/GetRunTrace": SEE_RUNS,
    # An operator any run of its graphs, a submitter its own runs (the servicer checks):
    # LangGraph clients cancel what they started.
    "/graphmesh.v1.RunService/CancelRun": SUBMIT,
    "/graphmesh.v1.RunService/RetryRun": OPERATE,
    "/graphmesh.v1.RunService/ResumeRun": OPERATE,
    # A submitter its own threads (the servicer checks), an operator any of its graphs'.
    "/graphmesh.v1.RunService/PurgeThread": SUBMIT,
    # Its owner or an operator of its graph (checked in the handler, as for PurgeThread).
    "/graphmesh.v1.RunService/DeleteRun": SUBMIT,
    "/graphmesh.v1.GraphService/ListGraphs": ANYONE,
    "/graphmesh.v1.GraphService/GetGraph": ANYONE,
    "/graphmesh.v1.GraphService/SetRollout": OPERATE,
    "/graphmesh.v1.GraphService/RollbackGraph": OPERATE,
    "/graphmesh.v1.GraphService/DisableNode": OPERATE,
    "/graphmesh.v1.GraphService/EnableNode": OPERATE,
    "/graphmesh.v1.GraphService/ListWorkers": OPERATE,
    # Reviewers the approvals of their graphs; a submitter sees those of its own runs and
    # answers the ones no node policy role guards (the servicer checks; a LangGraph client's
    # Command(resume=...) is a decision).
    "/graphmesh.v1.ReviewService/ListApprovals": REVIEW_OR_OWN,
    "/graphmesh.v1.ReviewService/GetApproval": REVIEW_OR_OWN,
    "/graphmesh.v1.ReviewService/WatchApprovals": REVIEW,
    "/graphmesh.v1.ReviewService/Decide": REVIEW_OR_OWN,
    "/graphmesh.v1.ReviewService/ListAuditRecords": ("reviewer", "operator"),
    "/graphmesh.v1.WorkerService/GetWorkerStatus": OPERATE,
    "/graphmesh.v1.WorkerService/Drain": OPERATE,
    "/graphmesh.v1.WebhookService/ListWebhookDeliveries": OPERATE,
    "/graphmesh.v1.WebhookService/ReplayWebhookDelivery": OPERATE,
    "/graphmesh.v1.ScheduleService/CreateSchedule": SUBMIT,
    "/graphmesh.v1.ScheduleService/GetSchedule": SUBMIT,
    "/graphmesh.v1.ScheduleService/ListSchedules": SUBMIT,
    "/graphmesh.v1.ScheduleService/UpdateSchedule": SUBMIT,
    "/graphmesh.v1.ScheduleService/DeleteSchedule": SUBMIT,
    "/graphmesh.v1.ScheduleService/PauseSchedule": SUBMIT,
    "/graphmesh.v1.ScheduleService/ResumeSchedule": SUBMIT,
    "/graphmesh.v1.ScheduleService/RunScheduleNow": SUBMIT,
    "/graphmesh.v1.ScheduleService/ListScheduleFires": SUBMIT,
    "/graphmesh.v1.GraphService/DescribeGraph": ANYONE,
    # Threads are the runs' records: a submitter sees and changes its own (the servicer checks).
    "/graphmesh.v1.ThreadService/CreateThread": SUBMIT,
    "/graphmesh.v1.ThreadService/GetThread": SEE_RUNS,
    "/graphmesh.v1.ThreadService/UpdateThread": SUBMIT,
    "/graphmesh.v1.ThreadService/ListThreads": SEE_RUNS,
    "/graphmesh.v1.ThreadService/CountThreads": SEE_RUNS,
    "/graphmesh.v1.ThreadService/GetThreadHistory": SEE_RUNS,
    "/graphmesh.v1.ThreadService/UpdateThreadState": SUBMIT,
    "/graphmesh.v1.AssistantService/CreateAssistant": SUBMIT,
    "/graphmesh.v1.AssistantService/GetAssistant": ANYONE,
    "/graphmesh.v1.AssistantService/UpdateAssistant": SUBMIT,
    "/graphmesh.v1.AssistantService/DeleteAssistant": SUBMIT,
    "/graphmesh.v1.AssistantService/ListAssistants": ANYONE,
    "/graphmesh.v1.AssistantService/CountAssistants": ANYONE,
    # One store per deployment (no per-principal namespaces): what runs' graphs read and write.
    "/graphmesh.v1.StoreService/PutItem": SUBMIT,
    "/graphmesh.v1.StoreService/GetItem": SUBMIT,
    "/graphmesh.v1.StoreService/DeleteItem": SUBMIT,
    "/graphmesh.v1.StoreService/SearchItems": SUBMIT,
    "/graphmesh.v1.StoreService/ListNamespaces": SUBMIT,
    "/graphmesh.v1.AuthService/WhoAmI": ANYONE,
    "/graphmesh.v1.AuthService/CreateToken": ("admin",),
    "/graphmesh.v1.AuthService/ListTokens": ("admin",),
    "/graphmesh.v1.AuthService/RevokeToken": ("admin",),
}

# Open to everyone, authenticated or not: load balancers and tooling probe these.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
