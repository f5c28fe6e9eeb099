"""The fault-injection suite's figures: collected per scenario, printed at the end of the run.

Each scenario appends one `Figures` row to the session's collector (`fault_figures`); the
`pytest_terminal_summary` hook prints them as a table in pytest's normal output (with or
without `-s`) and writes them to `fault_figures.txt` in the session's temporary directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

FIGURES = pytest.StashKey[list]()
FIGURES_FILE = pytest.StashKey[str]()


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


@pytest.fixture(scope="session")
def fault_figures(request, tmp_path_factory):
    """The session's collector: `fault_figures("scenario")` returns a new `Figures` row for the
    scenario to fill in (fill it in before asserting, so a failing scenario still reports)."""
    collected: list[Figures] = request.config.stash.setdefault(FIGURES, [])
    request.config.stash[FIGURES_FILE] = str(tmp_path_factory.getbasetemp() / "fault_figures.txt")

    def new(scenario: str) -> Figures:
        figures = Figures(scenario)
        collected.append(figures)
        return figures

    return new


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    figures = config.stash.get(FIGURES, None)
    if not figures:
        return
    lines = format_table(figures)
    terminalreporter.write_sep("=", "fault-injection figures")
    for line in lines:
        terminalreporter.write_line(line)
    path = config.stash.get(FIGURES_FILE, None)
    if path:
        try:
            with open(path, "w") as out:
                out.write("\n".join(lines) + "\n")
            terminalreporter.write_line(f"(also written to {path})")
        except OSError:
            pass
