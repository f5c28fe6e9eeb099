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

class ThreadStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    THREAD_STATUS_UNSPECIFIED: _ClassVar[ThreadStatus]
    THREAD_STATUS_IDLE: _ClassVar[ThreadStatus]
    THREAD_STATUS_BUSY: _ClassVar[ThreadStatus]
    THREAD_STATUS_INTERRUPTED: _ClassVar[ThreadStatus]
    THREAD_STATUS_ERROR: _ClassVar[ThreadStatus]
THREAD_STATUS_UNSPECIFIED: ThreadStatus
THREAD_STATUS_IDLE: ThreadStatus
THREAD_STATUS_BUSY: ThreadStatus
THREAD_STATUS_INTERRUPTED: ThreadStatus
THREAD_STATUS_ERROR: ThreadStatus

class Thread(_message.Message):
    __slots__ = ("thread_id", "graph", "metadata", "status", "created_at", "updated_at", "active_run_id", "latest_run_id", "values", "interrupts", "owner")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LATEST_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    graph: str
    metadata: _struct_pb2.Struct
    status: ThreadStatus
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    active_run_id: str
    latest_run_id: str
    values: _struct_pb2.Struct
    interrupts: _containers.RepeatedCompositeFieldContainer[ThreadInterrupt]
    owner: str
    def __init__(self, thread_id: _Optional[str] = ..., graph: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., status: _Optional[_Union[ThreadStatus, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_run_id: _Optional[str] = ..., latest_run_id: _Optional[str] = ..., values: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., interrupts: _Optional[_Iterable[_Union[ThreadInterrupt, _Mapping]]] = ..., owner: _Optional[str] = ...) -> None: ...

class ThreadInterrupt(_message.Message):
    __slots__ = ("interrupt_id", "value", "node", "approval_id", "run_id")
    INTERRUPT_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    interrupt_id: str
    value: _struct_pb2.Value
    node: str
    approval_id: str
    run_id: str
    def __init__(self, interrupt_id: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., node: _Optional[str] = ..., approval_id: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class ThreadTask(_message.Message):
    __slots__ = ("task_id", "name", "error", "interrupts", "checkpoint_ns")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_NS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    name: str
    error: str
    interrupts: _containers.RepeatedCompositeFieldContainer[ThreadInterrupt]
    checkpoint_ns: str
    def __init__(self, task_id: _Optional[str] = ..., name: _Optional[str] = ..., error: _Optional[str] = ..., interrupts: _Optional[_Iterable[_Union[ThreadInterrupt, _Mapping]]] = ..., checkpoint_ns: _Optional[str] = ...) -> None: ...

class ThreadSnapshot(_message.Message):
    __slots__ = ("values", "next", "checkpoint_id", "parent_checkpoint_id", "checkpoint_ns", "metadata", "created_at", "tasks", "interrupts")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_NS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTS_FIELD_NUMBER: _ClassVar[int]
    values: _struct_pb2.Struct
    next: _containers.RepeatedScalarFieldContainer[str]
    checkpoint_id: str
    parent_checkpoint_id: str
    checkpoint_ns: str
    metadata: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    tasks: _containers.RepeatedCompositeFieldContainer[ThreadTask]
    interrupts: _containers.RepeatedCompositeFieldContainer[ThreadInterrupt]
    def __init__(self, values: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., next: _Optional[_Iterable[str]] = ..., checkpoint_id: _Optional[str] = ..., parent_checkpoint_id: _Optional[str] = ..., checkpoint_ns: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[ThreadTask, _Mapping]]] = ..., interrupts: _Optional[_Iterable[_Union[ThreadInterrupt, _Mapping]]] = ...) -> None: ...
