"""OpenTelemetry for graphmesh: traces that follow a run across processes, a Postgres
trace store, Prometheus metrics. See docs/decisions.md, "Observability"."""
