"""The Cloud Monitoring dashboard format (API v1, `projects.dashboards`) as a JSON Schema.

Field names, oneofs, enums and bounds follow the v1 reference and its protos
(google/monitoring/dashboard/v1: dashboard, layouts, widget, xychart, scorecard, table,
text, metrics): a Dashboard has a displayName and exactly one layout; a mosaic tile sits at
xPos/yPos and spans width/height blocks; a widget holds exactly one content; a
TimeSeriesQuery has exactly one source; durations are protobuf JSON durations ("60s");
thresholds of an XyChart take no color or direction. Only the part of the format that
monitoring/dashboard.json uses is allowed, and nothing else (`additionalProperties: false`
throughout), so a misspelt field fails here instead of in `gcloud monitoring dashboards
create`. The one query source allowed is PromQL (`prometheusQuery`), which reads the
service's metrics and the recording rules as Managed Service for Prometheus stores them.
"""

from __future__ import annotations

from typing import Any

DURATION = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,9})?s$"}


def _object(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _one_of(*names: str) -> dict[str, Any]:
    """Exactly one of `names` is set (a protobuf oneof)."""
    return {"oneOf": [{"required": [name]} for name in names]}


TIME_SERIES_QUERY = _object(
    {
        "prometheusQuery": {"type": "string", "minLength": 1},
        "unitOverride": {"type": "string"},
        "outputFullDuration": {"type": "boolean"},
    },
    "prometheusQuery",
)

AXIS = _object({"label": {"type": "string"}, "scale": {"enum": ["LINEAR", "LOG10"]}})

XY_THRESHOLD = _object(
    {
        "label": {"type": "string"},
        "value": {"type": "number"},
        "targetAxis": {"enum": ["Y1", "Y2"]},
    },
    "value",
)

SCORECARD_THRESHOLD = _object(
    {
        "label": {"type": "string"},
        "value": {"type": "number"},
        "color": {"enum": ["YELLOW", "RED"]},
        "direction": {"enum": ["ABOVE", "BELOW"]},
    },
    "value",
    "color",
    "direction",
)

XY_CHART = _object(
    {
        "dataSets": {
            "type": "array",
            "minItems": 1,
            "items": _object(
                {
                    "timeSeriesQuery": TIME_SERIES_QUERY,
                    "plotType": {"enum": ["LINE", "STACKED_AREA", "STACKED_BAR", "HEATMAP"]},
                    "legendTemplate": {"type": "string"},
                    "minAlignmentPeriod": DURATION,
                    "targetAxis": {"enum": ["Y1", "Y2"]},
                },
                "timeSeriesQuery",
            ),
        },
        "timeshiftDuration": DURATION,
        "thresholds": {"type": "array", "items": XY_THRESHOLD},
        "xAxis": AXIS,
        "yAxis": AXIS,
        "y2Axis": AXIS,
        "chartOptions": _object({"mode": {"enum": ["COLOR", "X_RAY", "STATS"]}}),
    },
    "dataSets",
)

SCORECARD = {
    **_object(
        {
            "timeSeriesQuery": TIME_SERIES_QUERY,
            "gaugeView": _object(
                {"lowerBound": {"type": "number"}, "upperBound": {"type": "number"}}
            ),
            "sparkChartView": _object(
                {
                    "sparkChartType": {"enum": ["SPARK_LINE", "SPARK_BAR"]},
                    "minAlignmentPeriod": DURATION,
                },
                "sparkChartType",
            ),
            "blankView": _object({}),
            "thresholds": {"type": "array", "items": SCORECARD_THRESHOLD},
        },
        "timeSeriesQuery",
    ),
    "not": {"anyOf": [{"required": ["gaugeView", "sparkChartView"]}]},
}

TIME_SERIES_TABLE = _object(
    {
        "dataSets": {
            "type": "array",
            "minItems": 1,
            "items": _object(
                {
                    "timeSeriesQuery": TIME_SERIES_QUERY,
                    "tableTemplate": {"type": "string"},
                    "minAlignmentPeriod": DURATION,
                },
                "timeSeriesQuery",
            ),
        },
        "metricVisualization": {"enum": ["NUMBER", "BAR"]},
        "columnSettings": {
            "type": "array",
            "items": _object(
                {"column": {"type": "string"}, "visible": {"type": "boolean"}}, "column", "visible"
            ),
        },
    },
    "dataSets",
)

TEXT = _object(
    {"content": {"type": "string", "minLength": 1}, "format": {"enum": ["MARKDOWN", "RAW"]}},
    "content",
)

CONTENTS = {
    "xyChart": XY_CHART,
    "scorecard": SCORECARD,
    "timeSeriesTable": TIME_SERIES_TABLE,
    "text": TEXT,
    "blank": _object({}),
}
WIDGET = {
    **_object({"title": {"type": "string"}, **CONTENTS}),
    **_one_of(*CONTENTS),
}

TILE = _object(
    {
        "xPos": {"type": "integer", "minimum": 0},
        "yPos": {"type": "integer", "minimum": 0},
        "width": {"type": "integer", "minimum": 1},
        "height": {"type": "integer", "minimum": 1},
        "widget": WIDGET,
    },
    "width",
    "height",
    "widget",
)

DASHBOARD = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    **_object(
        {
            "name": {"type": "string"},
            "displayName": {"type": "string", "minLength": 1},
            "etag": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "mosaicLayout": _object(
                {
                    "columns": {"type": "integer", "minimum": 1, "maximum": 48},
                    "tiles": {"type": "array", "minItems": 1, "items": TILE},
                },
                "columns",
                "tiles",
            ),
        },
        "displayName",
        "mosaicLayout",
    ),
}


def tile_problems(dashboard: dict[str, Any]) -> list[str]:
    """Tiles that stick out of the grid or overlap another (the format's own rule for
    `xPos` + `width`; overlapping tiles hide each other)."""
    layout = dashboard["mosaicLayout"]
    taken: dict[tuple[int, int], str] = {}
    problems = []
    for tile in layout["tiles"]:
        title = tile["widget"].get("title", "?")
        x, y = tile.get("xPos", 0), tile.get("yPos", 0)
        if x + tile["width"] > layout["columns"]:
            problems.append(f"{title!r} is wider than the {layout['columns']} columns")
        for column in range(x, x + tile["width"]):
            for row in range(y, y + tile["height"]):
                if (column, row) in taken:
                    problems.append(f"{title!r} overlaps {taken[column, row]!r}")
                taken[column, row] = title
    return sorted(set(problems))
