"""`python -m service.smoke URL`: the check Argo CD runs after every sync (a PostSync hook Job).

It runs from the image the Deployment runs, so it knows the model being served: it reads the
artifact's metadata.json (never the pickle) and, through the Service, checks that

1. `/readyz` answers 200 (retried for `--wait` seconds: the Service may still be settling);
2. `/version` reports the model version of this image's artifact;
3. `/predict` gives, for each reference row the training recorded (one per class), the class
   the model gave it at training time.

One line per check on stdout; exit status 0 when all pass, 1 otherwise. A failing Job fails
the sync in Argo CD, so a broken image is visible at once instead of only sticking the rollout.
Only the standard library is used: the hook adds no dependency to the image.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_MODEL_DIR = "/app/artifacts/model"
_TIMEOUT_S = 5.0


class SmokeError(Exception):
    """One check failed; the message says which and what was seen."""


def _request(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode("utf-8")
    # http(s) only: main() checks the scheme of the base URL.
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")  # noqa: S310
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return status, raw.decode("utf-8", "replace")[:200]


def load_metadata(model_dir: Path) -> dict[str, Any]:
    """The artifact's metadata.json: class names, features, reference rows, model version."""
    path = model_dir / "metadata.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SmokeError(f"cannot read {path}: {exc}") from exc
    for key in ("model_version", "class_names", "feature_names", "reference_predictions"):
        if key not in data:
            raise SmokeError(f"{path} has no {key}")
    if not data["reference_predictions"]:
        raise SmokeError(f"{path} records no reference predictions to check")
    return dict(data)


def wait_ready(base: str, wait_s: float) -> None:
    """Poll /readyz until it answers 200 or `wait_s` seconds have passed."""
    deadline = time.monotonic() + wait_s
    last = "no answer"
    while True:
        try:
            status, _ = _request(f"{base}/readyz")
            if status == 200:
                return
            last = f"HTTP {status}"
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            raise SmokeError(f"/readyz: not ready after {wait_s:g} s ({last})")
        time.sleep(1.0)


def check(base: str, metadata: dict[str, Any], wait_s: float) -> list[str]:
    """Run every check against `base`; returns the lines to print, raises on the first failure."""
    lines = []
    wait_ready(base, wait_s)
    lines.append("ok /readyz")
    status, body = _request(f"{base}/version")
    served = body.get("model_version") if isinstance(body, dict) else None
    if status != 200 or served != metadata["model_version"]:
        raise SmokeError(
            f"/version: HTTP {status}, model_version {served!r}, expected "
            f"{metadata['model_version']!r} (the Service answers with another model)"
        )
    lines.append(f"ok /version model_version={served}")
    classes, features = metadata["class_names"], metadata["feature_names"]
    for row in metadata["reference_predictions"]:
        probabilities = row["probabilities"]
        expected = classes[max(range(len(probabilities)), key=probabilities.__getitem__)]
        payload = dict(zip(features, row["features"], strict=True))
        status, body = _request(f"{base}/predict", payload)
        species = body.get("species") if isinstance(body, dict) else None
        if status != 200 or species != expected:
            raise SmokeError(
                f"/predict {payload}: HTTP {status}, {species!r}, expected {expected!r}"
            )
        lines.append(f"ok /predict {expected}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Check the service at URL; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m service.smoke", description=__doc__.split("\n")[0]
    )
    parser.add_argument("url", help="the Service, e.g. http://iris-api")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=Path(os.environ.get("IRIS_MODEL_DIR") or DEFAULT_MODEL_DIR),
        help="the artifact whose metadata.json says what to expect (default: $IRIS_MODEL_DIR)",
    )
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for /readyz")
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://", "https://")):
        parser.error(f"URL {args.url!r} is not http:// or https://")
    try:
        for line in check(args.url.rstrip("/"), load_metadata(args.model_dir), args.wait):
            print(line, flush=True)
    except SmokeError as exc:
        print(f"smoke test failed: {exc}", file=sys.stderr, flush=True)
        return 1
    print("smoke test passed", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
