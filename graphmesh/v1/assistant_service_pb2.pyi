import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AssistantIfExists(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASSISTANT_IF_EXISTS_UNSPECIFIED: _ClassVar[AssistantIfExists]
    ASSISTANT_IF_EXISTS_RAISE: _ClassVar[AssistantIfExists]
    ASSISTANT_IF_EXISTS_DO_NOTHING: _ClassVar[AssistantIfExists]

class AssistantSortBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASSISTANT_SORT_BY_UNSPECIFIED: _ClassVar[AssistantSortBy]
    ASSISTANT_SORT_BY_CREATED_AT: _ClassVar[AssistantSortBy]
    ASSISTANT_SORT_BY_UPDATED_AT: _ClassVar[AssistantSortBy]
    ASSISTANT_SORT_BY_NAME: _ClassVar[AssistantSortBy]
    ASSISTANT_SORT_BY_GRAPH: _ClassVar[AssistantSortBy]
    ASSISTANT_SORT_BY_ASSISTANT_ID: _ClassVar[AssistantSortBy]
ASSISTANT_IF_EXISTS_UNSPECIFIED: AssistantIfExists
ASSISTANT_IF_EXISTS_RAISE: AssistantIfExists
ASSISTANT_IF_EXISTS_DO_NOTHING: AssistantIfExists
ASSISTANT_SORT_BY_UNSPECIFIED: AssistantSortBy
ASSISTANT_SORT_BY_CREATED_AT: AssistantSortBy
ASSISTANT_SORT_BY_UPDATED_AT: AssistantSortBy
ASSISTANT_SORT_BY_NAME: AssistantSortBy
ASSISTANT_SORT_BY_GRAPH: AssistantSortBy
ASSISTANT_SORT_BY_ASSISTANT_ID: AssistantSortBy

class Assistant(_message.Message):
    __slots__ = ("assistant_id", "graph", "name", "description", "config", "context", "metadata", "version", "created_at", "updated_at", "system")
    ASSISTANT_ID_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    assistant_id: str
    graph: str
    name: str
    description: str
    config: _struct_pb2.Struct
    context: _struct_pb2.Struct
    metadata: _struct_pb2.Struct
    version: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    system: bool
    def __init__(self, assistant_id: _Optional[str] = ..., graph: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., system: _Optional[bool] = ...) -> None: ...

class CreateAssistantRequest(_message.Message):
    __slots__ = ("assistant_id", "graph", "name", "description", "config", "context", "metadata", "if_exists")
    ASSISTANT_ID_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IF_EXISTS_FIELD_NUMBER: _ClassVar[int]
    assistant_id: str
    graph: str
    name: str
    description: str
    config: _struct_pb2.Struct
    context: _struct_pb2.Struct
    metadata: _struct_pb2.Struct
    if_exists: AssistantIfExists
    def __init__(self, assistant_id: _Optional[str] = ..., graph: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., if_exists: _Optional[_Union[AssistantIfExists, str]] = ...) -> None: ...

class CreateAssistantResponse(_message.Message):
    __slots__ = ("assistant", "created")
    ASSISTANT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    assistant: Assistant
    created: bool
    def __init__(self, assistant: _Optional[_Union[Assistant, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetAssistantRequest(_message.Message):
    __slots__ = ("assistant_id",)
    ASSISTANT_ID_FIELD_NUMBER: _ClassVar[int]
    assistant_id: str
    def __init__(self, assistant_id: _Optional[str] = ...) -> None: ...

class GetAssistantResponse(_message.Message):
    __slots__ = ("assistant",)
    ASSISTANT_FIELD_NUMBER: _ClassVar[int]
    assistant: Assistant
    def __init__(self, assistant: _Optional[_Union[Assistant, _Mapping]] = ...) -> None: ...

class UpdateAssistantRequest(_message.Message):
    __slots__ = ("assistant_id", "assistant", "update_mask")
    ASSISTANT_ID_FIELD_NUMBER: _ClassVar[int]
    ASSISTANT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    assistant_id: str
    assistant: Assistant
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, assistant_id: _Optional[str] = ..., assistant: _Optional[_Union[Assistant, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateAssistantResponse(_message.Message):
    __slots__ = ("assistant",)
    ASSISTANT_FIELD_NUMBER: _ClassVar[int]
    assistant: Assistant
    def __init__(self, assistant: _Optional[_Union[Assistant, _Mapping]] = ...) -> None: ...

class DeleteAssistantRequest(_message.Message):
    __slots__ = ("assistant_id",)
    ASSISTANT_ID_FIELD_NUMBER: _ClassVar[int]
    assistant_id: str
    def __init__(self, assistant_id: _Optional[str] = ...) -> None: ...

class DeleteAssistantResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAssistantsRequest(_message.Message):
    __slots__ = ("graph", "metadata", "name", "limit", "offset", "sort_by", "ascending")
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SORT_BY_FIELD_NUMBER: _ClassVar[int]
    ASCENDING_FIELD_NUMBER: _ClassVar[int]
    graph: str
    metadata: _struct_pb2.Struct
    name: str
    limit: int
    offset: int
    sort_by: AssistantSortBy
    ascending: bool
    def __init__(self, graph: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., name: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., sort_by: _Optional[_Union[AssistantSortBy, str]] = ..., ascending: _Optional[bool] = ...) -> None: ...

class ListAssistantsResponse(_message.Message):
    __slots__ = ("assistants", "has_more")
    ASSISTANTS_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    assistants: _containers.RepeatedCompositeFieldContainer[Assistant]
    has_more: bool
    def __init__(self, assistants: _Optional[_Iterable[_Union[Assistant, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

class CountAssistantsRequest(_message.Message):
    __slots__ = ("graph", "metadata", "name")
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    graph: str
    metadata: _struct_pb2.Struct
    name: str
    def __init__(self, graph: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class CountAssistantsResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...
