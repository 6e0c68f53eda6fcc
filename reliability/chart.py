"""The picture of a `make reliability` record: each scenario's measured figure against its bound.

One bar per measure, as a share of the bound the scenario checks it against (the line at
100%): green within the bound, red past it, labelled with the figure and the bound in their
own units. Measures and bounds are read from the record itself, the bounds from the
scenario's details or from the check that enforces them, so the picture cannot drift from
what was checked. `python -m reliability.chart [record.json]` redraws it from a record
(default reliability/results/latest.json), next to it as .png.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display, no GUI toolkit

import matplotlib.pyplot as plt

Record = dict[str, Any]
Scenario = dict[str, Any]


@dataclass(frozen=True)
class Measure:
    """One figure of a scenario and the bound it must stay within (at or below)."""

    scenario: str
    label: str
    value: float
    bound: float
    unit: str

    @property
    def within(self) -> bool:
        return self.value <= self.bound

    @property
    def share(self) -> float:
        """The figure as a share of its bound (1 = at the bound)."""
        if self.bound == 0:
            return 0.0 if self.value == 0 else float("inf")
        return self.value / self.bound


class ChartError(ValueError):
    """The record lacks a figure or a bound the chart needs; the message says which."""


def _check_bound(scenario: Scenario, pattern: str) -> float:
    """The number in the scenario's check matching `pattern` (its one group)."""
    for check in scenario["checks"]:
        match = re.search(pattern, check["check"])
        if match:
            return float(match.group(1))
    raise ChartError(f"{scenario['scenario']}: no check matches {pattern!r}")


def _sustained_load(s: Scenario, record: Record) -> list[Measure]:
    d = s["details"]
    growth = max(a - b for a, b in zip(d["rss_after_mib"], d["rss_before_mib"], strict=True))
    return [
        Measure(
            s["scenario"], "RSS growth, worst worker", growth, d["rss_growth_bound_mib"], "MiB"
        ),
        Measure(s["scenario"], "non-2xx or failed requests", s["failures"], 0, ""),
    ]


def _graceful_shutdown(s: Scenario, record: Record) -> list[Measure]:
    timeout = record["shutdown_budget"]["graceful_timeout_s"]
    return [Measure(s["scenario"], "exit after SIGTERM", s["details"]["exit_s"], timeout, "s")]


def _worker_crash(s: Scenario, record: Record) -> list[Measure]:
    return [
        Measure(
            s["scenario"],
            "failed requests",
            s["failures"],
            # "<= 2 x connections (N)" since the bound doubled; older records say
            # "<= connections (N)".
            _check_bound(s, r"failed requests <= (?:2 x )?connections \((\d+)\)"),
            "",
        ),
        Measure(
            s["scenario"],
            "replacement serving after",
            s["details"]["serving_s"],
            _check_bound(s, r"replacement serving within ([\d.]+) s"),
            "s",
        ),
    ]


def _bad_artifacts(s: Scenario, record: Record) -> list[Measure]:
    slowest = max(artifact["exit_s"] for artifact in s["details"]["artifacts"])
    raw_s = s["details"].get("raw_asgi_cold_start_s")
    if raw_s is not None:  # the bound is a multiple of the raw-ASGI app's cold start
        bound = raw_s * _check_bound(s, r"exit within ([\d.]+)x the raw-ASGI cold start")
    else:  # records made before that: a fixed number of seconds
        bound = _check_bound(s, r"exit within ([\d.]+) s")
    return [Measure(s["scenario"], "slowest refusal at start", slowest, bound, "s")]


def _hostile_input(s: Scenario, record: Record) -> list[Measure]:
    d = s["details"]
    measures = [
        Measure(
            s["scenario"],
            "RSS growth",
            d["rss_growth_mib"],
            _check_bound(s, r"RSS growth <= ([\d.]+) MiB"),
            "MiB",
        )
    ]
    cut = [seconds for seconds, _ in d["slow_bodies"] if seconds is not None]
    if cut and any("slow bodies cut within" in c["check"] for c in s["checks"]):
        bound = _check_bound(s, r"slow bodies cut within ([\d.]+) s")
        measures.append(Measure(s["scenario"], "slow bodies cut after", max(cut), bound, "s"))
    return measures


def _gitops_safety(s: Scenario, record: Record) -> list[Measure]:
    kills = s["details"]["kill_outcomes"]
    label = f"torn files after {sum(kills.values())} kills"
    return [Measure(s["scenario"], label, kills["torn"], 0, "")]


# By scenario number: the figures each scenario is judged by.
MEASURES: dict[str, Callable[[Scenario, Record], list[Measure]]] = {
    "1": _sustained_load,
    "2": _graceful_shutdown,
    "3": _worker_crash,
    "4": _bad_artifacts,
    "5": _hostile_input,
    "6": _gitops_safety,
}


def measures(record: Record) -> list[Measure]:
    """Every figure of the record with its bound, in scenario order."""
    found: list[Measure] = []
    for scenario in record["scenarios"]:
        number = scenario["scenario"].split(" ", 1)[0]
        if number not in MEASURES:
            raise ChartError(f"no figures are defined for scenario {scenario['scenario']!r}")
        try:
            found.extend(MEASURES[number](scenario, record))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ChartError):
                raise
            raise ChartError(f"{scenario['scenario']}: missing {exc}") from None
    if not found:
        raise ChartError("the record holds no scenario")
    return found


def _amount(value: float, unit: str) -> str:
    text = f"{value:.3g}" if value % 1 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def draw(record: Record, out: Path) -> Path:
    """Write the chart of `record` to `out` (PNG); returns `out`."""
    found = measures(record)
    # Past the bound, bars stop at the right edge: the label gives the figure.
    edge = 1.5
    shares = [min(m.share, edge) for m in found]
    labels = [f"{m.scenario}: {m.label}" for m in found]
    figure, axes = plt.subplots(figsize=(10, 0.55 * len(found) + 1.6))
    try:
        rows = range(len(found))[::-1]  # first scenario on top
        colours = ["tab:green" if m.within else "tab:red" for m in found]
        axes.barh(list(rows), shares, color=colours, height=0.6)
        axes.axvline(1.0, color="black", linestyle="--", linewidth=1)
        axes.text(1.0, len(found) - 0.4, " bound", va="bottom", fontsize=8)
        for row, measure, share in zip(rows, found, shares, strict=True):
            figure_text = _amount(measure.value, measure.unit)
            text = f"{figure_text} of {_amount(measure.bound, measure.unit)}"
            if measure.bound == 0:
                text = f"{figure_text} (must be 0)"
            axes.text(share + 0.01, row, text, va="center", fontsize=8)
        axes.set_yticks(list(rows), labels, fontsize=8)
        axes.set_xlim(0, edge + 0.35)
        axes.set_xlabel("share of the bound (dashed line: the bound; past it the scenario fails)")
        verdicts = sum(1 for s in record["scenarios"] if s["verdict"] == "pass")
        axes.set_title(
            f"make reliability, {record.get('date', '?')}: "
            f"{verdicts} of {len(record['scenarios'])} scenarios pass",
            fontsize=10,
        )
        figure.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        # Written beside the target and renamed: a failed draw leaves the old chart whole.
        partial = out.with_name(out.name + ".partial")
        figure.savefig(partial, format="png", dpi=110)
        partial.replace(out)
    finally:
        plt.close(figure)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else Path(__file__).parent / "results" / "latest.json"
    try:
        record = json.loads(source.read_text())
        out = draw(record, source.with_suffix(".png"))
    except (OSError, ValueError) as exc:
        print(f"reliability.chart: {source}: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
