"""What a multi-host topology needs from the settings: a NATS URL list, the address a
worker advertises, stream replicas and the drain grace from the environment."""

from __future__ import annotations

import socket

import pytest

from graphmesh.bus.connection import server_urls
from graphmesh.bus.streams import stream_configs, worker_consumer_config
from graphmesh.config import Settings
from graphmesh.rpc.host import advertised_address


def test_a_nats_url_list_is_split_and_trimmed():
    assert server_urls("nats://a:4222") == ["nats://a:4222"]
    assert server_urls(" nats://u:p@a:4222, nats://b:4222 ,,nats://c:4222") == [
        "nats://u:p@a:4222", "nats://b:4222", "nats://c:4222"]
    with pytest.raises(ValueError):
        server_urls(" , ")


def test_a_wildcard_listen_address_is_advertised_as_this_hosts_ip():
    host_ip = socket.gethostbyname(socket.gethostname())
    assert advertised_address("0.0.0.0:50053") == f"{host_ip}:50053"
    assert advertised_address("[::]:50053") == f"{host_ip}:50053"
    assert advertised_address("10.1.2.3:50053") == "10.1.2.3:50053"
    assert advertised_address("0.0.0.0:50053", "worker-0.workers:50053") == "worker-0.workers:50053"


def test_topology_settings_come_from_the_environment():
    s = Settings.from_env({"GRAPHMESH_NATS_REPLICAS": "3", "GRAPHMESH_ADVERTISE_ADDRESS": "10.0.0.7:50053",
                           "GRAPHMESH_DRAIN_GRACE_SECONDS": "45"})
    assert (s.nats_replicas, s.advertise_address, s.drain_grace_seconds) == (3, "10.0.0.7:50053", 45.0)
    assert Settings.from_env({}).nats_replicas == 1


def test_streams_and_the_worker_consumer_carry_the_replica_count():
    assert {c.num_replicas for c in stream_configs(replicas=3)} == {3}
    assert worker_consumer_config(ack_wait_seconds=8, replicas=3).num_replicas == 3
