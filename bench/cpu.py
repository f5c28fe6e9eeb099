"""CPU accounting per process group during a phase (psutil), to show where a run's CPU goes."""

from __future__ import annotations

import os

try:
    import psutil
except ImportError:  # optional: the benchmark runs without it, minus the CPU breakdown
    psutil = None


def _tree_cpu(pid: int) -> float:
    """user+system CPU seconds of a process and its live children."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


class CpuMeter:
    """snapshot() before and after; delta() -> {group: cpu seconds}."""

    def __init__(self, groups: dict[str, int | None]) -> None:
        self.groups = {k: v for k, v in groups.items() if v}
        self._start: dict[str, float] = {}

    @property
    def available(self) -> bool:
        return psutil is not None

    def snapshot(self) -> dict[str, float]:
        if psutil is None:
            return {}
        snap = {}
        for name, pid in self.groups.items():
            if pid == os.getpid():  # the driver: its own threads only, not the mesh it spawned
                t = psutil.Process(pid).cpu_times()
                snap[name] = t.user + t.system
            else:
                snap[name] = _tree_cpu(pid)
        return snap

    def start(self) -> None:
        self._start = self.snapshot()

    def stop(self) -> dict[str, float]:
        end = self.snapshot()
        return {k: round(end[k] - self._start.get(k, 0.0), 3) for k in end}
