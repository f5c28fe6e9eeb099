from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from graphmesh.v1 import thread_pb2 as _thread_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IfExists(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IF_EXISTS_UNSPECIFIED: _ClassVar[IfExists]
    IF_EXISTS_RAISE: _ClassVar[IfExists]
    IF_EXISTS_DO_NOTHING: _ClassVar[IfExists]

class ThreadSortBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    THREAD_SORT_BY_UNSPECIFIED: _ClassVar[ThreadSortBy]
    THREAD_SORT_BY_CREATED_AT: _ClassVar[ThreadSortBy]
    THREAD_SORT_BY_UPDATED_AT: _ClassVar[ThreadSortBy]
    THREAD_SORT_BY_THREAD_ID: _ClassVar[ThreadSortBy]
    THREAD_SORT_BY_STATUS: _ClassVar[ThreadSortBy]
IF_EXISTS_UNSPECIFIED: IfExists
IF_EXISTS_RAISE: IfExists
IF_EXISTS_DO_NOTHING: IfExists
THREAD_SORT_BY_UNSPECIFIED: ThreadSortBy
THREAD_SORT_BY_CREATED_AT: ThreadSortBy
THREAD_SORT_BY_UPDATED_AT: ThreadSortBy
THREAD_SORT_BY_THREAD_ID: ThreadSortBy
THREAD_SORT_BY_STATUS: ThreadSortBy

class CreateThreadRequest(_message.Message):
    __slots__ = ("thread_id", "metadata", "if_exists", "graph")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IF_EXISTS_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    metadata: _struct_pb2.Struct
    if_exists: IfExists
    graph: str
    def __init__(self, thread_id: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., if_exists: _Optional[_Union[IfExists, str]] = ..., graph: _Optional[str] = ...) -> None: ...

class CreateThreadResponse(_message.Message):
    __slots__ = ("thread", "created")
    THREAD_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    thread: _thread_pb2.Thread
    created: bool
    def __init__(self, thread: _Optional[_Union[_thread_pb2.Thread, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetThreadRequest(_message.Message):
    __slots__ = ("thread_id", "include_values")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VALUES_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    include_values: bool
    def __init__(self, thread_id: _Optional[str] = ..., include_values: _Optional[bool] = ...) -> None: ...

class GetThreadResponse(_message.Message):
    __slots__ = ("thread",)
    THREAD_FIELD_NUMBER: _ClassVar[int]
    thread: _thread_pb2.Thread
    def __init__(self, thread: _Optional[_Union[_thread_pb2.Thread, _Mapping]] = ...) -> None: ...

class UpdateThreadRequest(_message.Message):
    __slots__ = ("thread_id", "metadata", "update_mask")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    metadata: _struct_pb2.Struct
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, thread_id: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateThreadResponse(_message.Message):
    __slots__ = ("thread",)
    THREAD_FIELD_NUMBER: _ClassVar[int]
    thread: _thread_pb2.Thread
    def __init__(self, thread: _Optional[_Union[_thread_pb2.Thread, _Mapping]] = ...) -> None: ...

class ListThreadsRequest(_message.Message):
    __slots__ = ("metadata", "values", "status", "graph", "thread_ids", "limit", "offset", "sort_by", "ascending", "include_values")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    THREAD_IDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SORT_BY_FIELD_NUMBER: _ClassVar[int]
    ASCENDING_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VALUES_FIELD_NUMBER: _ClassVar[int]
    metadata: _struct_pb2.Struct
    values: _struct_pb2.Struct
    status: _thread_pb2.ThreadStatus
    graph: str
    thread_ids: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    offset: int
    sort_by: ThreadSortBy
    ascending: bool
    include_values: bool
    def __init__(self, metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., values: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., status: _Optional[_Union[_thread_pb2.ThreadStatus, str]] = ..., graph: _Optional[str] = ..., thread_ids: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., sort_by: _Optional[_Union[ThreadSortBy, str]] = ..., ascending: _Optional[bool] = ..., include_values: _Optional[bool] = ...) -> None: ...

class ListThreadsResponse(_message.Message):
    __slots__ = ("threads", "has_more")
    THREADS_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    threads: _containers.RepeatedCompositeFieldContainer[_thread_pb2.Thread]
    has_more: bool
    def __init__(self, threads: _Optional[_Iterable[_Union[_thread_pb2.Thread, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

class CountThreadsRequest(_message.Message):
    __slots__ = ("metadata", "values", "status", "graph")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    metadata: _struct_pb2.Struct
    values: _struct_pb2.Struct
    status: _thread_pb2.ThreadStatus
    graph: str
    def __init__(self, metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., values: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., status: _Optional[_Union[_thread_pb2.ThreadStatus, str]] = ..., graph: _Optional[str] = ...) -> None: ...

class CountThreadsResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class GetThreadHistoryRequest(_message.Message):
    __slots__ = ("thread_id", "limit", "before_checkpoint_id", "metadata", "checkpoint_id")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    limit: int
    before_checkpoint_id: str
    metadata: _struct_pb2.Struct
    checkpoint_id: str
    def __init__(self, thread_id: _Optional[str] = ..., limit: _Optional[int] = ..., before_checkpoint_id: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., checkpoint_id: _Optional[str] = ...) -> None: ...

class GetThreadHistoryResponse(_message.Message):
    __slots__ = ("snapshots",)
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[_thread_pb2.ThreadSnapshot]
    def __init__(self, snapshots: _Optional[_Iterable[_Union[_thread_pb2.ThreadSnapshot, _Mapping]]] = ...) -> None: ...

class UpdateThreadStateRequest(_message.Message):
    __slots__ = ("thread_id", "values", "as_node", "checkpoint_id", "graph")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    AS_NODE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    values: _struct_pb2.Value
    as_node: str
    checkpoint_id: str
    graph: str
    def __init__(self, thread_id: _Optional[str] = ..., values: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., as_node: _Optional[str] = ..., checkpoint_id: _Optional[str] = ..., graph: _Optional[str] = ...) -> None: ...

class UpdateThreadStateResponse(_message.Message):
    __slots__ = ("checkpoint_id",)
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    checkpoint_id: str
    def __init__(self, checkpoint_id: _Optional[str] = ...) -> None: ...
