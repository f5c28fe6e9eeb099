"""Upgrading a thread's latest checkpoint to a newer state schema, as the manifest declares.

A migration writes a new checkpoint, a child of the old one, through the checkpointer's
own API: the old checkpoint stays in the thread's history (time travel, audit), and
nothing is rewritten in place. The steps work on LangGraph's checkpoint dict:

- a field rename moves the channel's value and version;
- a node rename moves what the node has seen and the `branch:to:<node>` trigger channel,
  so a thread paused before the old node resumes before the new one;
- a transform gets the renamed state dict and returns the new one; channels whose value
  changed get a new version.

Writes pending on the old checkpoint (a superstep that was interrupted midway) are not
carried: those tasks run again from the migrated checkpoint, as LangGraph re-runs a node
it resumes. An interrupt is therefore raised again; the executor answers it with the
decision already recorded for the same node (see interrupts.carry_decisions).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from langgraph.checkpoint.base import BaseCheckpointSaver, Checkpoint
from langgraph.checkpoint.base.id import uuid6

from graphmesh.errors import ExecutionError
from graphmesh.store.records import VERSION_FIELDS

# LangGraph (1.x) triggers a StateGraph node by writing to this channel.
TRIGGER_PREFIX = "branch:to:"

Transform = Callable[[dict], dict]


class MigrationFailed(ExecutionError):
    """A declared migration could not be applied to this checkpoint; the run is refused
    (the executor reports it as IncompatibleCheckpoint)."""

    run_error_code = "INCOMPATIBLE_CHECKPOINT"


@dataclass(frozen=True)
class Applied:
    """The record of one migration, as stored on the run."""

    from_versions: dict[str, str]
    to_versions: dict[str, str]
    from_checkpoint_id: str
    to_checkpoint_id: str
    steps: list[str]
    node_renames: dict[str, str]  # composed over every step: old node -> node now

    def record(self) -> dict[str, Any]:
        return {"time": datetime.now(timezone.utc).isoformat(), "from_versions": self.from_versions,
                "to_versions": self.to_versions, "from_checkpoint_id": self.from_checkpoint_id,
                "to_checkpoint_id": self.to_checkpoint_id, "steps": self.steps}


def _is_state_channel(name: str) -> bool:
    return not name.startswith(("__", TRIGGER_PREFIX))


def upgrade(checkpoint: Checkpoint, *, rename_fields: dict[str, str], rename_nodes: dict[str, str],
            transform: Transform | None, next_version: Callable[[Any], Any]) -> Checkpoint:
    """One migration step on a checkpoint dict; returns a new dict (the input is untouched)."""
    renames = {**rename_fields, **{TRIGGER_PREFIX + a: TRIGGER_PREFIX + b for a, b in rename_nodes.items()}}
    values, versions = checkpoint["channel_values"], checkpoint["channel_versions"]
    for old, new in renames.items():
        if new in versions and old in versions:
            raise MigrationFailed(f"cannot rename {old!r} to {new!r}: the checkpoint already has {new!r}")

    def rn(name: str) -> str:
        return renames.get(name, name)

    out = copy.copy(checkpoint)
    out["channel_values"] = {rn(k): v for k, v in values.items()}
    out["channel_versions"] = {rn(k): v for k, v in versions.items()}
    out["versions_seen"] = {rename_nodes.get(node, node): {rn(ch): v for ch, v in seen.items()}
                            for node, seen in checkpoint["versions_seen"].items()}
    if "updated_channels" in checkpoint and checkpoint["updated_channels"] is not None:
        out["updated_channels"] = [rn(c) for c in checkpoint["updated_channels"]]
    if transform is not None:
        _apply_transform(out, transform, next_version)
    return out


def _apply_transform(checkpoint: Checkpoint, transform: Transform, next_version: Callable[[Any], Any]) -> None:
    values, versions = checkpoint["channel_values"], checkpoint["channel_versions"]
    before = {k: v for k, v in values.items() if _is_state_channel(k)}
    try:
        after = transform(copy.deepcopy(before))
    except Exception as exc:
        raise MigrationFailed(f"the migration transform raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(after, dict):
        raise MigrationFailed(f"the migration transform returned {type(after).__name__}, not a state dict")
    bumped = next_version(max(versions.values(), default=None))
    for key in before.keys() - after.keys():
        values.pop(key, None)
        versions.pop(key, None)
    for key, value in after.items():
        if not isinstance(key, str) or not _is_state_channel(key):
            raise MigrationFailed(f"the migration transform returned a reserved or non-text key {key!r}")
        if key not in before or before[key] != value:
            values[key] = value
            versions[key] = bumped


async def migrate_thread(saver: BaseCheckpointSaver, thread_id: str, steps: list, *,
                         transforms: list[Transform | None], metadata: dict[str, Any]) -> Applied:
    """Applies `steps` (MigrationStep, in order) to the thread's latest checkpoint and saves
    the result as its child, with `metadata` (the new versions) merged over the old."""
    parent = await saver.aget_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
    if parent is None:
        raise MigrationFailed(f"thread {thread_id} has no checkpoint to migrate")
    checkpoint = parent.checkpoint
    node_renames: dict[str, str] = {}
    for step, transform in zip(steps, transforms):
        checkpoint = upgrade(checkpoint, rename_fields=dict(step.spec.rename_fields),
                             rename_nodes=dict(step.spec.rename_nodes), transform=transform,
                             next_version=lambda current: saver.get_next_version(current, None))
        node_renames = {old: step.spec.rename_nodes.get(now, now) for old, now in node_renames.items()}
        node_renames.update({a: b for a, b in step.spec.rename_nodes.items() if a not in node_renames})
    step_no = int((parent.metadata or {}).get("step", -1))
    checkpoint = {**checkpoint, "id": str(uuid6(clock_seq=step_no + 1)),
                  "ts": datetime.now(timezone.utc).isoformat()}
    old_meta = dict(parent.metadata or {})
    new_meta = {**old_meta, **metadata, "source": "update", "step": step_no, "parents": {},
                "gm_migrated_from": parent.config["configurable"]["checkpoint_id"]}
    saved = await saver.aput(parent.config, checkpoint, new_meta, dict(checkpoint["channel_versions"]))
    return Applied(
        from_versions={f: str(old_meta.get(f, "")) for f in VERSION_FIELDS},
        to_versions={f: str(metadata.get(f, "")) for f in VERSION_FIELDS},
        from_checkpoint_id=parent.config["configurable"]["checkpoint_id"],
        to_checkpoint_id=saved["configurable"]["checkpoint_id"],
        steps=[s for step in steps for s in step.spec.describe()],
        node_renames=node_renames,
    )
