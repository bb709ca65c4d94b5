"""One finding type and one way to print findings, for `check`, `doctor` and `deploy`.

A finding is a name, a status (ok, warning, failed), a reason and, when something is wrong,
the fix. Every command prints them as the same fixed-width table.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class Reportable(Protocol):
    name: str
    reason: str
    fix: str

    @property
    def status(self) -> str: ...


@dataclass(frozen=True)
class Finding:
    """Something a command found out; checks.CheckResult is the self-check's kind."""

    name: str
    status: str  # "ok", "warning" or "failed"
    reason: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def render_table(findings: Iterable[Reportable]) -> str:
    """A fixed-width table: check, result, reason, fix (the fix only where it is needed)."""
    rows = [("check", "result", "reason", "fix")]
    rows += [
        (f.name, f.status if f.status == "ok" else f.status.upper(), f.reason, f.fix)
        for f in findings
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    out = io.StringIO()
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(3)]
        out.write("  ".join([*cells, row[3]]).rstrip() + "\n")
    return out.getvalue()
