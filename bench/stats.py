"""Latency samples -> summary figures (milliseconds), shared by the mesh and in-process phases."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank-with-interpolation percentile (q in 0..100); NaN for no samples."""
    if not values:
        return math.nan
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class Sample:
    first_event_s: float  # request sent -> first event received
    completed_s: float  # request sent -> terminal (completed) event received
    first_node_s: float | None = None  # mesh only: request sent -> first node event (not QUEUED/RUNNING)


@dataclass
class PhaseResult:
    name: str
    description: str
    runs: int
    concurrency: int
    wall_s: float
    failed: int = 0
    samples: list[Sample] = field(default_factory=list, repr=False)
    extra: dict = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return len(self.samples) / self.wall_s if self.wall_s > 0 else math.nan

    def summary(self) -> dict:
        first = [s.first_event_s * 1000 for s in self.samples]
        done = [s.completed_s * 1000 for s in self.samples]
        node = [s.first_node_s * 1000 for s in self.samples if s.first_node_s is not None]
        return {
            "name": self.name,
            "description": self.description,
            "runs": self.runs,
            "completed": len(self.samples),
            "failed": self.failed,
            "concurrency": self.concurrency,
            "wall_s": round(self.wall_s, 3),
            "runs_per_s": round(self.throughput, 2),
            "completed_ms": {"p50": _r(percentile(done, 50)), "p90": _r(percentile(done, 90)),
                             "p99": _r(percentile(done, 99)), "mean": _r(sum(done) / len(done) if done else math.nan)},
            "first_event_ms": {"p50": _r(percentile(first, 50)), "p90": _r(percentile(first, 90)),
                               "p99": _r(percentile(first, 99)), "mean": _r(sum(first) / len(first) if first else math.nan)},
            **({"first_node_event_ms": {"p50": _r(percentile(node, 50)), "p99": _r(percentile(node, 99))}}
               if node else {}),
            **({"extra": self.extra} if self.extra else {}),
        }

    def to_json(self) -> dict:
        d = asdict(self)
        d["samples"] = [[s.first_event_s, s.completed_s, s.first_node_s] for s in self.samples]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "PhaseResult":
        d = dict(d)
        d["samples"] = [Sample(*row) for row in d["samples"]]
        return cls(**d)


def _r(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 2)
