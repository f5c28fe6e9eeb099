"""Prometheus metrics through the OpenTelemetry metrics API.

Instruments are module-level (the API hands out proxies until a provider is installed),
so code records without knowing whether metrics are on. `setup_metrics` installs a
MeterProvider whose PrometheusMetricReader serves /metrics over HTTP
(prometheus_client's server, on its own thread). Values that need a query (queue depth,
pending approvals) are refreshed by a poller into `snapshots`, which the gauges read at
scrape time: a scrape never waits on Postgres or NATS.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

log = logging.getLogger(__name__)

meter = metrics.get_meter("graphmesh")

RUNS_CREATED = meter.create_counter("graphmesh.runs.created", unit="{run}",
                                    description="Runs accepted by CreateRun and InvokeRun")
RUNS_FINISHED = meter.create_counter("graphmesh.runs.finished", unit="{run}",
                                     description="Run executions that rested, by resulting status")
# Bucket boundaries of every histogram in seconds (OpenTelemetry's default buckets are
# meant for milliseconds: 0, 5, 10, 25, ... would put every run under 5 s in one bucket).
# From 5 ms (a fast node) to a day (an approval that waited overnight).
SECONDS_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                                      60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0, 24 * 3600.0)


def seconds_histogram(name: str, description: str):
    # The advisory reaches the SDK through the API's proxy meter; metric_views() says the
    # same for any histogram in seconds, whichever way it was created.
    return meter.create_histogram(name, unit="s", description=description,
                                  explicit_bucket_boundaries_advisory=SECONDS_BUCKETS)


RUN_DURATION = seconds_histogram("graphmesh.run.duration", "Wall time of one execution of a run, until it rests")
NODE_DURATION = seconds_histogram("graphmesh.node.duration", "Wall time of one node execution")
DECISION_LATENCY = seconds_histogram("graphmesh.approval.decision_latency", "From approval request to decision")
LOOP_FAILURES = meter.create_counter("graphmesh.loop.failures", unit="{failure}",
                                     description="Failed passes of a periodic background loop (graphmesh/loops.py)")
JOBS_TERMINATED = meter.create_counter(
    "graphmesh.jobs.terminated", unit="{message}",
    description="Job messages a worker stopped redelivering because they failed before claiming their run")

# name -> {attribute tuple: value}; written by pollers and services, read at scrape time.
snapshots: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}


def set_snapshot(name: str, values: dict[tuple[tuple[str, str], ...], float]) -> None:
    snapshots[name] = dict(values)


def _reader(name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v, dict(attrs)) for attrs, v in snapshots.get(name, {}).items()]
    return observe


for _name, _unit, _description in [
    ("graphmesh.queue.depth", "{run}", "Runs QUEUED in Postgres, per graph version"),
    ("graphmesh.queue.consumer_lag", "{message}", "Job messages not yet delivered or not yet acked"),
    ("graphmesh.runs.active", "{run}", "Runs in flight per graph version and status (running, waiting, paused)"),
    ("graphmesh.worker.active_runs", "{run}", "Runs this worker is executing"),
    ("graphmesh.worker.capacity", "{run}", "Runs this worker may execute at once"),
    ("graphmesh.approvals.pending", "{approval}", "Approvals waiting for a decision, per graph"),
    ("graphmesh.dependency.up", "1", "1 when the dependency (postgres, nats) answers, else 0"),
]:
    meter.create_observable_gauge(_name, callbacks=[_reader(_name)], unit=_unit, description=_description)


def metric_views() -> list:
    """The MeterProvider's views: every histogram in seconds gets SECONDS_BUCKETS."""
    from opentelemetry.sdk.metrics import Histogram
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

    return [View(instrument_type=Histogram, instrument_unit="s",
                 aggregation=ExplicitBucketHistogramAggregation(SECONDS_BUCKETS))]


def setup_metrics(service: str, listen: str) -> None:
    """Serves this process's metrics on `listen` (host:port); empty: metrics stay no-ops."""
    if not listen:
        return
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from prometheus_client import start_http_server

    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")
    metrics.set_meter_provider(MeterProvider(
        resource=Resource.create({"service.name": f"graphmesh-{service}"}),
        metric_readers=[PrometheusMetricReader()], views=metric_views()))
    log.info("metrics on http://%s/metrics", listen)
