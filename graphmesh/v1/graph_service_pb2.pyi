import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from graphmesh.v1 import run_pb2 as _run_pb2
from graphmesh.v1 import worker_service_pb2 as _worker_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DescribeGraphRequest(_message.Message):
    __slots__ = ("graph", "graph_version", "xray", "subgraph_namespace", "recurse")
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    XRAY_FIELD_NUMBER: _ClassVar[int]
    SUBGRAPH_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RECURSE_FIELD_NUMBER: _ClassVar[int]
    graph: str
    graph_version: str
    xray: int
    subgraph_namespace: str
    recurse: bool
    def __init__(self, graph: _Optional[str] = ..., graph_version: _Optional[str] = ..., xray: _Optional[int] = ..., subgraph_namespace: _Optional[str] = ..., recurse: _Optional[bool] = ...) -> None: ...

class GraphSchemas(_message.Message):
    __slots__ = ("input_schema", "output_schema", "state_schema", "config_schema", "context_schema")
    INPUT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    STATE_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    CONFIG_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    input_schema: _struct_pb2.Value
    output_schema: _struct_pb2.Value
    state_schema: _struct_pb2.Value
    config_schema: _struct_pb2.Value
    context_schema: _struct_pb2.Value
    def __init__(self, input_schema: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., output_schema: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., state_schema: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., config_schema: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., context_schema: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class DescribeGraphResponse(_message.Message):
    __slots__ = ("graph", "graph_version", "drawable", "schemas", "subgraphs")
    class SubgraphsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: GraphSchemas
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[GraphSchemas, _Mapping]] = ...) -> None: ...
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    DRAWABLE_FIELD_NUMBER: _ClassVar[int]
    SCHEMAS_FIELD_NUMBER: _ClassVar[int]
    SUBGRAPHS_FIELD_NUMBER: _ClassVar[int]
    graph: str
    graph_version: str
    drawable: _struct_pb2.Struct
    schemas: GraphSchemas
    subgraphs: _containers.MessageMap[str, GraphSchemas]
    def __init__(self, graph: _Optional[str] = ..., graph_version: _Optional[str] = ..., drawable: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., schemas: _Optional[_Union[GraphSchemas, _Mapping]] = ..., subgraphs: _Optional[_Mapping[str, GraphSchemas]] = ...) -> None: ...

class GraphVersion(_message.Message):
    __slots__ = ("versions", "weight", "sync_eligible", "nodes", "workers", "runs_queued", "runs_running", "runs_waiting", "runs_paused", "undeclared")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SYNC_ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    RUNS_QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUNS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    RUNS_WAITING_FIELD_NUMBER: _ClassVar[int]
    RUNS_PAUSED_FIELD_NUMBER: _ClassVar[int]
    UNDECLARED_FIELD_NUMBER: _ClassVar[int]
    versions: _run_pb2.Versions
    weight: int
    sync_eligible: bool
    nodes: _containers.RepeatedScalarFieldContainer[str]
    workers: _containers.RepeatedScalarFieldContainer[str]
    runs_queued: int
    runs_running: int
    runs_waiting: int
    runs_paused: int
    undeclared: bool
    def __init__(self, versions: _Optional[_Union[_run_pb2.Versions, _Mapping]] = ..., weight: _Optional[int] = ..., sync_eligible: _Optional[bool] = ..., nodes: _Optional[_Iterable[str]] = ..., workers: _Optional[_Iterable[str]] = ..., runs_queued: _Optional[int] = ..., runs_running: _Optional[int] = ..., runs_waiting: _Optional[int] = ..., runs_paused: _Optional[int] = ..., undeclared: _Optional[bool] = ...) -> None: ...

class DisabledNode(_message.Message):
    __slots__ = ("node", "reason", "disabled_by", "disabled_at")
    NODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DISABLED_BY_FIELD_NUMBER: _ClassVar[int]
    DISABLED_AT_FIELD_NUMBER: _ClassVar[int]
    node: str
    reason: str
    disabled_by: str
    disabled_at: _timestamp_pb2.Timestamp
    def __init__(self, node: _Optional[str] = ..., reason: _Optional[str] = ..., disabled_by: _Optional[str] = ..., disabled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Graph(_message.Message):
    __slots__ = ("name", "versions", "disabled_nodes", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    DISABLED_NODES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    versions: _containers.RepeatedCompositeFieldContainer[GraphVersion]
    disabled_nodes: _containers.RepeatedCompositeFieldContainer[DisabledNode]
    description: str
    def __init__(self, name: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[GraphVersion, _Mapping]]] = ..., disabled_nodes: _Optional[_Iterable[_Union[DisabledNode, _Mapping]]] = ..., description: _Optional[str] = ...) -> None: ...

class ListGraphsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListGraphsResponse(_message.Message):
    __slots__ = ("graphs",)
    GRAPHS_FIELD_NUMBER: _ClassVar[int]
    graphs: _containers.RepeatedCompositeFieldContainer[Graph]
    def __init__(self, graphs: _Optional[_Iterable[_Union[Graph, _Mapping]]] = ...) -> None: ...

class GetGraphRequest(_message.Message):
    __slots__ = ("graph",)
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    graph: str
    def __init__(self, graph: _Optional[str] = ...) -> None: ...

class GetGraphResponse(_message.Message):
    __slots__ = ("graph",)
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    graph: Graph
    def __init__(self, graph: _Optional[_Union[Graph, _Mapping]] = ...) -> None: ...

class SetRolloutRequest(_message.Message):
    __slots__ = ("graph", "weights", "reason")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    graph: str
    weights: _containers.ScalarMap[str, int]
    reason: str
    def __init__(self, graph: _Optional[str] = ..., weights: _Optional[_Mapping[str, int]] = ..., reason: _Optional[str] = ...) -> None: ...

class SetRolloutResponse(_message.Message):
    __slots__ = ("graph",)
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    graph: Graph
    def __init__(self, graph: _Optional[_Union[Graph, _Mapping]] = ...) -> None: ...

class RollbackGraphRequest(_message.Message):
    __slots__ = ("graph", "reason")
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    graph: str
    reason: str
    def __init__(self, graph: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RollbackGraphResponse(_message.Message):
    __slots__ = ("graph",)
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    graph: Graph
    def __init__(self, graph: _Optional[_Union[Graph, _Mapping]] = ...) -> None: ...

class DisableNodeRequest(_message.Message):
    __slots__ = ("graph", "node", "reason")
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    graph: str
    node: str
    reason: str
    def __init__(self, graph: _Optional[str] = ..., node: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DisableNodeResponse(_message.Message):
    __slots__ = ("graph",)
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    graph: Graph
    def __init__(self, graph: _Optional[_Union[Graph, _Mapping]] = ...) -> None: ...

class EnableNodeRequest(_message.Message):
    __slots__ = ("graph", "node")
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    graph: str
    node: str
    def __init__(self, graph: _Optional[str] = ..., node: _Optional[str] = ...) -> None: ...

class EnableNodeResponse(_message.Message):
    __slots__ = ("graph",)
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    graph: Graph
    def __init__(self, graph: _Optional[_Union[Graph, _Mapping]] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("worker_id", "address", "capacity", "active_runs", "draining", "graphs", "started_at", "last_seen")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_RUNS_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    GRAPHS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    address: str
    capacity: int
    active_runs: int
    draining: bool
    graphs: _containers.RepeatedCompositeFieldContainer[_worker_service_pb2.LoadedGraph]
    started_at: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    def __init__(self, worker_id: _Optional[str] = ..., address: _Optional[str] = ..., capacity: _Optional[int] = ..., active_runs: _Optional[int] = ..., draining: _Optional[bool] = ..., graphs: _Optional[_Iterable[_Union[_worker_service_pb2.LoadedGraph, _Mapping]]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ...) -> None: ...
