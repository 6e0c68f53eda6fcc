"""What a scenario measured and the checks it passed or failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Outcome:
    """What one scenario measured and whether it held."""

    scenario: str
    load: str
    duration_s: float = 0.0
    requests: int = 0
    failures: int = 0
    figure: str = ""
    checks: list[tuple[str, bool]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def check(self, description: str, passed: bool) -> None:
        self.checks.append((description, bool(passed)))

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(passed for _, passed in self.checks)

    @property
    def verdict(self) -> str:
        failed = [d for d, passed in self.checks if not passed]
        if not self.checks:
            return "FAIL: nothing was checked"
        return "pass" if not failed else "FAIL: " + "; ".join(failed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "load": self.load,
            "duration_s": round(self.duration_s, 2),
            "requests": self.requests,
            "failures": self.failures,
            "figure": self.figure,
            "verdict": self.verdict,
            "checks": [{"check": d, "passed": p} for d, p in self.checks],
            "details": self.details,
        }
