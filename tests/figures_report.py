"""Figures the suite prints at the end of a run, whether its tests pass or fail: the
fault-injection table (one `Figures` row per scenario, filled in through the `fault_figures`
fixture of tests/faults/conftest.py; also written to `fault_figures.txt` in the session's
temporary directory) and plain lines (`report_line`, e.g. the container tests'). Printed by
tests/conftest.py's `pytest_terminal_summary`; under pytest-xdist each worker hands its
figures to the controller (`workeroutput`), which prints them all."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

FIGURES = pytest.StashKey[list]()
FIGURES_FILE = pytest.StashKey[str]()
LINES = pytest.StashKey[list]()


def report_line(config: pytest.Config, line: str) -> None:
    """A line for the end of the run's output."""
    config.stash.setdefault(LINES, []).append(line)


@dataclass
class Figures:
    scenario: str
    runs: int = 0
    kills: int = 0  # workers SIGKILLed by the test
    outages: int = 0  # backend stops (Postgres, NATS) or graceful worker restarts
    lost: int = 0  # runs not COMPLETED when the scenario ended
    duplicated: int = 0  # (run, node) pairs whose side effect happened more than once
    expected_duplicates: int = 0  # of those: the node was cut off between its effect and its checkpoint
    real_duplicates: int = 0  # of those: a node re-ran although its completion was recorded
    rescued: int = 0  # runs the api's reconciler had to re-publish (their queue message was gone)
    recover_seconds: float | None = None  # fault over (last kill / backend back / last restart) -> all runs ended
    notes: list[str] = field(default_factory=list)


COLUMNS = ("scenario", "runs", "kills", "outages", "lost", "duplicated", "expected dup", "real dup",
           "rescued", "recover s")


def _row(f: Figures) -> tuple[str, ...]:
    recover = "-" if f.recover_seconds is None else f"{f.recover_seconds:.1f}"
    return (f.scenario, str(f.runs), str(f.kills), str(f.outages), str(f.lost), str(f.duplicated),
            str(f.expected_duplicates), str(f.real_duplicates), str(f.rescued), recover)


def format_table(figures: list[Figures]) -> list[str]:
    rows = [COLUMNS] + [_row(f) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for f in figures:
        lines.extend(f"{f.scenario}: {note}" for note in f.notes)
    return lines
