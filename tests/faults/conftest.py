"""The fault-injection suite's figures collector (`fault_figures`); the table they make is
tests/figures_report.py, printed at the end of the run by tests/conftest.py."""

from __future__ import annotations

import pytest

from figures_report import FIGURES, FIGURES_FILE, Figures


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
