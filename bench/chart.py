"""The run as a picture: req/s and p99 of every case, one bar each, ceiling and baselines
in their own colours (docs/performance.md shows it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLOURS = {
    "iris-api": "#1f77b4",
    "iris-bare": "#9ecae1",
    "raw-asgi": "#7f7f7f",
    "tutorial": "#ff7f0e",
    "tidy": "#ffbb78",
    "mlserver": "#d62728",
}


def draw(summaries: dict[str, dict[str, Any]], title: str, path: Path) -> Path:
    """Write a PNG of req/s and p99 per case to `path` (the server's colour per bar)."""
    # Only the benchmark draws; importing here keeps matplotlib off every other path.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(summaries.values())[::-1]  # first case on top
    names = [c["name"] for c in cases]
    colours = [COLOURS.get(c["server"], "#2ca02c") for c in cases]
    figure, (rate, tail) = plt.subplots(
        1, 2, figsize=(11, 0.42 * len(cases) + 1.6), dpi=110, sharey=True
    )
    rate.barh(names, [c["rps"] for c in cases], color=colours)
    rate.set_xscale("log")
    rate.set_xlabel("requests/s (median of the rounds; log scale)")
    for y, case in enumerate(cases):
        label = f"{case['rps']:,.0f}"
        if case["rows_per_request"] > 1:
            label += f"  ({case['rows_per_s']:,.0f} rows/s)"
        rate.text(case["rps"], y, " " + label, va="center", fontsize=7)
    tail.barh(names, [c["p99_ms"] for c in cases], color=colours)
    tail.set_xscale("log")
    tail.set_xlabel("p99 latency, ms, at the same load (log scale)")
    for y, case in enumerate(cases):
        tail.text(case["p99_ms"], y, f" {case['p99_ms']:,.1f}", va="center", fontsize=7)
    for axes in (rate, tail):
        axes.margins(x=0.35)
        axes.grid(axis="x", which="major", alpha=0.3)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)
    return path
