"""Data retention: purging a thread from every store, deleting one finished run, and the sweeps that enforce each
graph's retention settings. See docs/data.md."""

from graphmesh.retention.purge import SYSTEM_ACTOR, PurgeResult, RunDeletion, delete_run, purge_thread
from graphmesh.retention.sweeper import EPOCH, Sweeper, retention_by_graph
from graphmesh.store.pruning import prune_thread_checkpoints

__all__ = ["EPOCH", "SYSTEM_ACTOR", "PurgeResult", "RunDeletion", "Sweeper", "delete_run", "prune_thread_checkpoints",
           "purge_thread", "retention_by_graph"]
