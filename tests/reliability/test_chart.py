"""reliability/chart.py: the PNG beside a `make reliability` record, drawn with the real
matplotlib from the committed record and from altered copies of it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import colors, image

from reliability.chart import ChartError, draw, main, measures

RECORD = Path(__file__).resolve().parents[2] / "reliability" / "results" / "latest.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def record() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(RECORD.read_text())
    return copy.deepcopy(loaded)


def red_pixels(png: Path) -> int:
    """Pixels of the colour a figure past its bound is drawn in (tab:red)."""
    pixels = image.imread(png)[..., :3]
    red = np.array(colors.to_rgb("tab:red"))
    return int((np.abs(pixels - red).max(axis=-1) < 0.02).sum())


def test_chart_of_the_committed_record_is_a_png_with_a_bar_per_figure(tmp_path: Path) -> None:
    out = draw(record(), tmp_path / "latest.png")
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    assert out.stat().st_size > 10_000
    height, width = image.imread(out).shape[:2]
    assert width > 800
    assert height > 400
    found = measures(record())
    # Every scenario of the record has at least one figure, each with its bound.
    assert {m.scenario for m in found} == {s["scenario"] for s in record()["scenarios"]}
    assert all(m.within for m in found)
    assert red_pixels(out) == 0


def test_bounds_come_from_the_record_and_its_checks() -> None:
    by_label = {(m.scenario.split()[0], m.label): m for m in measures(record())}
    shutdown = by_label["2", "exit after SIGTERM"]
    assert shutdown.bound == record()["shutdown_budget"]["graceful_timeout_s"]
    # "failed requests <= 2 x connections (128)", as reliability/serving.py words it.
    assert by_label["3", "failed requests"].bound == 128
    # "exit within 1x the raw-ASGI cold start (0.44 s)": the record's own measurement.
    artifacts = next(s for s in record()["scenarios"] if s["scenario"].startswith("4 "))
    refusal = by_label["4", "slowest refusal at start"]
    assert refusal.bound == artifacts["details"]["raw_asgi_cold_start_s"]


def _reworded(old: str, new: str, scenario: str) -> dict[str, Any]:
    """The committed record with one scenario's checks worded as an older run wrote them."""
    older = record()
    found = next(s for s in older["scenarios"] if s["scenario"].startswith(scenario))
    for check in found["checks"]:
        check["check"] = check["check"].replace(old, new)
    return older


def test_crash_bound_of_an_older_record_is_read_from_its_wording() -> None:
    older = _reworded(
        "failed requests <= 2 x connections (128)", "failed requests <= connections (64)", "3 "
    )

    by_label = {(m.scenario.split()[0], m.label): m for m in measures(older)}

    assert by_label["3", "failed requests"].bound == 64


def test_refusal_bound_follows_the_raw_asgi_cold_start_or_an_older_record_s_fixed_bound() -> None:
    slower = record()
    artifacts = next(s for s in slower["scenarios"] if s["scenario"].startswith("4 "))
    measured = artifacts["details"]["raw_asgi_cold_start_s"]
    artifacts["details"]["raw_asgi_cold_start_s"] = 1.9
    for check in artifacts["checks"]:
        check["check"] = check["check"].replace(
            f"raw-ASGI cold start ({measured:.2f} s)", "raw-ASGI cold start (1.90 s)"
        )
    (refusal,) = [m for m in measures(slower) if m.label == "slowest refusal at start"]
    assert refusal.bound == 1.9
    assert refusal.within

    older = _reworded(
        f"exit within 1x the raw-ASGI cold start ({measured:.2f} s)", "exit within 2.5 s", "4 "
    )
    del next(s for s in older["scenarios"] if s["scenario"].startswith("4 "))["details"][
        "raw_asgi_cold_start_s"
    ]
    (fixed,) = [m for m in measures(older) if m.label == "slowest refusal at start"]
    assert fixed.bound == 2.5


def test_a_figure_past_its_bound_is_drawn_red(tmp_path: Path) -> None:
    broken = record()
    shutdown = next(s for s in broken["scenarios"] if s["scenario"].startswith("2 "))
    shutdown["details"]["exit_s"] = 27.0
    (late,) = [m for m in measures(broken) if not m.within]
    assert (late.label, late.value, late.bound) == ("exit after SIGTERM", 27.0, 20.0)
    assert red_pixels(draw(broken, tmp_path / "late.png")) > 500


def test_a_record_missing_a_bound_is_refused_and_no_file_is_written(tmp_path: Path) -> None:
    broken = record()
    artifacts = next(s for s in broken["scenarios"] if s["scenario"].startswith("4 "))
    artifacts["checks"] = [c for c in artifacts["checks"] if "exit within" not in c["check"]]
    with pytest.raises(ChartError, match="4 bad artifact at start: no check matches"):
        draw(broken, tmp_path / "chart.png")
    assert list(tmp_path.iterdir()) == []


def test_command_line_redraws_beside_the_record_and_refuses_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "20260101T000000Z.json"
    good.write_text(RECORD.read_text())
    assert main([str(good)]) == 0
    assert good.with_suffix(".png").read_bytes().startswith(PNG_SIGNATURE)
    bad = tmp_path / "bad.json"
    bad.write_text('{"scenarios": []}')
    assert main([str(bad)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"reliability.chart: {bad}: the record holds no scenario"
    )
    assert not bad.with_suffix(".png").exists()
