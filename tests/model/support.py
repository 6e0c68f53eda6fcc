"""Helpers of the model tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model.artifact import METADATA_FILE


def edit_metadata(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply `change` to the artifact's metadata.json in place."""
    path = directory / METADATA_FILE
    metadata = json.loads(path.read_text())
    change(metadata)
    path.write_text(json.dumps(metadata))
