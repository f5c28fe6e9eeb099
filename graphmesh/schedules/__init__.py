"""Schedules (crons): a graph run on a cron expression in a time zone, fired exactly once per
scheduled time across api replicas (docs/schedules.md).

cron.py parses and evaluates expressions (pure); spec.py checks what a client asks for;
firing.py creates one fire's run as the schedule's owner; scheduler.py claims due schedules
in Postgres and applies the missed policy. The SQL is graphmesh/store/schedules.py."""
