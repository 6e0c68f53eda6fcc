"""Helpers for the short forms of the reliability scenarios (the long ones are `make reliability`).

Bounds here are looser than in `make reliability` where they are about time: under
`pytest -n 2` these tests share two cores with the rest of the suite, and a test that
fails because a neighbour was busy tells nothing. They stay tight enough to catch a
hang, a crash loop or a leak.
"""

from __future__ import annotations

from reliability.outcome import Outcome


def explain(outcome: Outcome) -> str:
    """The assertion message: the verdict, the figure, and the failed checks."""
    failed = [d for d, passed in outcome.checks if not passed]
    return f"{outcome.scenario}: {outcome.figure}; failed: {failed}; details: {outcome.details}"
