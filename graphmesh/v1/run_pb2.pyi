import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATUS_UNSPECIFIED: _ClassVar[RunStatus]
    RUN_STATUS_QUEUED: _ClassVar[RunStatus]
    RUN_STATUS_RUNNING: _ClassVar[RunStatus]
    RUN_STATUS_PAUSED: _ClassVar[RunStatus]
    RUN_STATUS_WAITING_FOR_APPROVAL: _ClassVar[RunStatus]
    RUN_STATUS_COMPLETED: _ClassVar[RunStatus]
    RUN_STATUS_FAILED: _ClassVar[RunStatus]
    RUN_STATUS_CANCELLED: _ClassVar[RunStatus]

class MultitaskStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MULTITASK_STRATEGY_UNSPECIFIED: _ClassVar[MultitaskStrategy]
    MULTITASK_STRATEGY_REJECT: _ClassVar[MultitaskStrategy]
    MULTITASK_STRATEGY_ENQUEUE: _ClassVar[MultitaskStrategy]
    MULTITASK_STRATEGY_INTERRUPT: _ClassVar[MultitaskStrategy]
    MULTITASK_STRATEGY_ROLLBACK: _ClassVar[MultitaskStrategy]
RUN_STATUS_UNSPECIFIED: RunStatus
RUN_STATUS_QUEUED: RunStatus
RUN_STATUS_RUNNING: RunStatus
RUN_STATUS_PAUSED: RunStatus
RUN_STATUS_WAITING_FOR_APPROVAL: RunStatus
RUN_STATUS_COMPLETED: RunStatus
RUN_STATUS_FAILED: RunStatus
RUN_STATUS_CANCELLED: RunStatus
MULTITASK_STRATEGY_UNSPECIFIED: MultitaskStrategy
MULTITASK_STRATEGY_REJECT: MultitaskStrategy
MULTITASK_STRATEGY_ENQUEUE: MultitaskStrategy
MULTITASK_STRATEGY_INTERRUPT: MultitaskStrategy
MULTITASK_STRATEGY_ROLLBACK: MultitaskStrategy

class Versions(_message.Message):
    __slots__ = ("graph_version", "prompt_version", "model_route", "tool_version", "state_schema_version")
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_ROUTE_FIELD_NUMBER: _ClassVar[int]
    TOOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    graph_version: str
    prompt_version: str
    model_route: str
    tool_version: str
    state_schema_version: str
    def __init__(self, graph_version: _Optional[str] = ..., prompt_version: _Optional[str] = ..., model_route: _Optional[str] = ..., tool_version: _Optional[str] = ..., state_schema_version: _Optional[str] = ...) -> None: ...

class RunError(_message.Message):
    __slots__ = ("code", "message", "node")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    node: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., node: _Optional[str] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "thread_id", "graph", "versions", "status", "attempt", "error", "owner", "idempotency_key", "metadata", "created_at", "started_at", "updated_at", "finished_at", "multitask_strategy", "previous_errors", "migrations", "schedule_id", "scheduled_for", "webhook", "options", "run_after")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    MULTITASK_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_ERRORS_FIELD_NUMBER: _ClassVar[int]
    MIGRATIONS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_FOR_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    RUN_AFTER_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    thread_id: str
    graph: str
    versions: Versions
    status: RunStatus
    attempt: int
    error: RunError
    owner: str
    idempotency_key: str
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    multitask_strategy: MultitaskStrategy
    previous_errors: _containers.RepeatedCompositeFieldContainer[RunError]
    migrations: _containers.RepeatedCompositeFieldContainer[CheckpointMigration]
    schedule_id: str
    scheduled_for: _timestamp_pb2.Timestamp
    webhook: Webhook
    options: RunOptions
    run_after: _timestamp_pb2.Timestamp
    def __init__(self, run_id: _Optional[str] = ..., thread_id: _Optional[str] = ..., graph: _Optional[str] = ..., versions: _Optional[_Union[Versions, _Mapping]] = ..., status: _Optional[_Union[RunStatus, str]] = ..., attempt: _Optional[int] = ..., error: _Optional[_Union[RunError, _Mapping]] = ..., owner: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., multitask_strategy: _Optional[_Union[MultitaskStrategy, str]] = ..., previous_errors: _Optional[_Iterable[_Union[RunError, _Mapping]]] = ..., migrations: _Optional[_Iterable[_Union[CheckpointMigration, _Mapping]]] = ..., schedule_id: _Optional[str] = ..., scheduled_for: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., webhook: _Optional[_Union[Webhook, _Mapping]] = ..., options: _Optional[_Union[RunOptions, _Mapping]] = ..., run_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RunOptions(_message.Message):
    __slots__ = ("stream_modes", "stream_subgraphs", "configurable", "context", "interrupt_before", "interrupt_after", "checkpoint_id", "command_update", "command_goto", "recursion_limit", "tags", "after_seconds")
    STREAM_MODES_FIELD_NUMBER: _ClassVar[int]
    STREAM_SUBGRAPHS_FIELD_NUMBER: _ClassVar[int]
    CONFIGURABLE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    INTERRUPT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    INTERRUPT_AFTER_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_UPDATE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_GOTO_FIELD_NUMBER: _ClassVar[int]
    RECURSION_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    stream_modes: _containers.RepeatedScalarFieldContainer[str]
    stream_subgraphs: bool
    configurable: _struct_pb2.Struct
    context: _struct_pb2.Struct
    interrupt_before: _containers.RepeatedScalarFieldContainer[str]
    interrupt_after: _containers.RepeatedScalarFieldContainer[str]
    checkpoint_id: str
    command_update: _struct_pb2.Value
    command_goto: _containers.RepeatedScalarFieldContainer[str]
    recursion_limit: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    after_seconds: int
    def __init__(self, stream_modes: _Optional[_Iterable[str]] = ..., stream_subgraphs: _Optional[bool] = ..., configurable: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., interrupt_before: _Optional[_Iterable[str]] = ..., interrupt_after: _Optional[_Iterable[str]] = ..., checkpoint_id: _Optional[str] = ..., command_update: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., command_goto: _Optional[_Iterable[str]] = ..., recursion_limit: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., after_seconds: _Optional[int] = ...) -> None: ...

class StreamChunk(_message.Message):
    __slots__ = ("mode", "namespace", "data")
    MODE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    mode: str
    namespace: _containers.RepeatedScalarFieldContainer[str]
    data: _struct_pb2.Value
    def __init__(self, mode: _Optional[str] = ..., namespace: _Optional[_Iterable[str]] = ..., data: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class Webhook(_message.Message):
    __slots__ = ("url", "on_waiting")
    URL_FIELD_NUMBER: _ClassVar[int]
    ON_WAITING_FIELD_NUMBER: _ClassVar[int]
    url: str
    on_waiting: bool
    def __init__(self, url: _Optional[str] = ..., on_waiting: _Optional[bool] = ...) -> None: ...

class CheckpointMigration(_message.Message):
    __slots__ = ("from_versions", "to_versions", "from_checkpoint_id", "to_checkpoint_id", "steps", "time")
    FROM_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    TO_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    FROM_CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    TO_CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    from_versions: Versions
    to_versions: Versions
    from_checkpoint_id: str
    to_checkpoint_id: str
    steps: _containers.RepeatedScalarFieldContainer[str]
    time: _timestamp_pb2.Timestamp
    def __init__(self, from_versions: _Optional[_Union[Versions, _Mapping]] = ..., to_versions: _Optional[_Union[Versions, _Mapping]] = ..., from_checkpoint_id: _Optional[str] = ..., to_checkpoint_id: _Optional[str] = ..., steps: _Optional[_Iterable[str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StatusChanged(_message.Message):
    __slots__ = ("status", "previous_status", "error")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    status: RunStatus
    previous_status: RunStatus
    error: RunError
    def __init__(self, status: _Optional[_Union[RunStatus, str]] = ..., previous_status: _Optional[_Union[RunStatus, str]] = ..., error: _Optional[_Union[RunError, _Mapping]] = ...) -> None: ...

class NodeStarted(_message.Message):
    __slots__ = ("node", "task_id", "step")
    NODE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    node: str
    task_id: str
    step: int
    def __init__(self, node: _Optional[str] = ..., task_id: _Optional[str] = ..., step: _Optional[int] = ...) -> None: ...

class NodeFinished(_message.Message):
    __slots__ = ("node", "task_id", "step", "update")
    NODE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    node: str
    task_id: str
    step: int
    update: _struct_pb2.Struct
    def __init__(self, node: _Optional[str] = ..., task_id: _Optional[str] = ..., step: _Optional[int] = ..., update: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CustomProgress(_message.Message):
    __slots__ = ("node", "data")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    node: str
    data: _struct_pb2.Value
    def __init__(self, node: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class ApprovalRequested(_message.Message):
    __slots__ = ("approval_id", "node", "interrupt_id", "payload")
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    INTERRUPT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    approval_id: str
    node: str
    interrupt_id: str
    payload: _struct_pb2.Value
    def __init__(self, approval_id: _Optional[str] = ..., node: _Optional[str] = ..., interrupt_id: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class ApprovalDecided(_message.Message):
    __slots__ = ("approval_id", "decision", "reviewer")
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    approval_id: str
    decision: str
    reviewer: str
    def __init__(self, approval_id: _Optional[str] = ..., decision: _Optional[str] = ..., reviewer: _Optional[str] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("run_id", "sequence", "time", "trace_id", "status_changed", "node_started", "node_finished", "custom", "approval_requested", "approval_decided", "error", "checkpoint_migrated", "stream_chunk")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    NODE_STARTED_FIELD_NUMBER: _ClassVar[int]
    NODE_FINISHED_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_DECIDED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_MIGRATED_FIELD_NUMBER: _ClassVar[int]
    STREAM_CHUNK_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    sequence: int
    time: _timestamp_pb2.Timestamp
    trace_id: str
    status_changed: StatusChanged
    node_started: NodeStarted
    node_finished: NodeFinished
    custom: CustomProgress
    approval_requested: ApprovalRequested
    approval_decided: ApprovalDecided
    error: RunError
    checkpoint_migrated: CheckpointMigration
    stream_chunk: StreamChunk
    def __init__(self, run_id: _Optional[str] = ..., sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace_id: _Optional[str] = ..., status_changed: _Optional[_Union[StatusChanged, _Mapping]] = ..., node_started: _Optional[_Union[NodeStarted, _Mapping]] = ..., node_finished: _Optional[_Union[NodeFinished, _Mapping]] = ..., custom: _Optional[_Union[CustomProgress, _Mapping]] = ..., approval_requested: _Optional[_Union[ApprovalRequested, _Mapping]] = ..., approval_decided: _Optional[_Union[ApprovalDecided, _Mapping]] = ..., error: _Optional[_Union[RunError, _Mapping]] = ..., checkpoint_migrated: _Optional[_Union[CheckpointMigration, _Mapping]] = ..., stream_chunk: _Optional[_Union[StreamChunk, _Mapping]] = ...) -> None: ...

class RunJob(_message.Message):
    __slots__ = ("run_id", "attempt", "graph", "graph_version")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    attempt: int
    graph: str
    graph_version: str
    def __init__(self, run_id: _Optional[str] = ..., attempt: _Optional[int] = ..., graph: _Optional[str] = ..., graph_version: _Optional[str] = ...) -> None: ...
