"""Load every graph of a manifest, as a worker would, and say what does not load.

`graphmesh graphs check --config FILE` runs it in the CLI's process; `graphmesh up` runs
it in a process of its own (`python -m graphmesh.preflight FILE`, with the services'
environment and working directory) before it starts anything, so a graph that cannot be
imported stops `up` with the graph's name and error instead of failing every run later.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Report", "check", "main"]


@dataclass
class Report:
    manifest: str
    graphs: list[str] = field(default_factory=list)  # "name@version" of each graph that loaded
    errors: list[str] = field(default_factory=list)  # one per graph that did not, naming it
    notices: list[str] = field(default_factory=list)  # what of the manifest graphmesh does not use

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        out = [f"notice: {n}" for n in self.notices]
        out += [f"ok      {g}" for g in self.graphs]
        out += [f"error:  {e}" for e in self.errors]
        return out


def check(manifest: str | Path) -> Report:
    from graphmesh.manifest import ManifestError
    from graphmesh.registry import Registry

    report = Report(str(manifest))
    try:
        registry = Registry.from_file(manifest)
    except ManifestError as exc:
        report.errors.append(str(exc))
        return report
    report.notices = registry.notices
    failed = registry.preload()
    for spec, message in failed:
        where = f"graph '{spec.name}' version '{spec.version}'"
        report.errors.append(message if message.startswith(where) else f"{where} ({spec.path}): {message}")
    broken = {spec.name + "@" + spec.version for spec, _ in failed}
    report.graphs = [f"{s.name}@{s.version}" for s in registry.specs() if f"{s.name}@{s.version}" not in broken]
    return report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m graphmesh.preflight MANIFEST", file=sys.stderr)
        return 2
    report = check(args[0])
    for line in report.lines():
        print(line, flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
