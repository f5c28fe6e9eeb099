"""The one factory for gRPC channels and typed stubs, for the CLI, tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from graphmesh.v1 import (
    graph_service_pb2_grpc,
    review_service_pb2_grpc,
    run_service_pb2_grpc,
    worker_service_pb2_grpc,
)

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]


@dataclass
class ApiClient:
    channel: grpc.Channel
    runs: run_service_pb2_grpc.RunServiceStub
    graphs: graph_service_pb2_grpc.GraphServiceStub

    def close(self) -> None:
        self.channel.close()


def api_client(address: str) -> ApiClient:
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    return ApiClient(channel, run_service_pb2_grpc.RunServiceStub(channel),
                     graph_service_pb2_grpc.GraphServiceStub(channel))


def async_api_client(address: str) -> ApiClient:
    channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    return ApiClient(channel, run_service_pb2_grpc.RunServiceStub(channel),
                     graph_service_pb2_grpc.GraphServiceStub(channel))


def worker_stub(address: str) -> worker_service_pb2_grpc.WorkerServiceStub:
    return worker_service_pb2_grpc.WorkerServiceStub(grpc.insecure_channel(address, options=CHANNEL_OPTIONS))


def review_stub(address: str) -> review_service_pb2_grpc.ReviewServiceStub:
    return review_service_pb2_grpc.ReviewServiceStub(grpc.insecure_channel(address, options=CHANNEL_OPTIONS))
