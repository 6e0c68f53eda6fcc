"""Write monitoring/prometheus-rules.yaml from deploy/base/rules.yaml (`make rules`).

Managed Service for Prometheus reads the rule groups from the Rules object that Argo CD
syncs; promtool and a plain Prometheus read a rule file. This writes the same groups as a
rule file, so the rules promtool tests are the rules the cluster evaluates;
tests/monitoring fails when the two differ. `--check` only compares, for CI and hooks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
RULES_MANIFEST = Path("deploy/base/rules.yaml")
RULE_FILE = Path("monitoring/prometheus-rules.yaml")
HEADER = f"""\
# Generated from {RULES_MANIFEST} by `make rules`; edit that file, not this one.
# The rule groups of the Rules object as a plain Prometheus rule file, for
# `promtool check rules`, `promtool test rules` and any self-run Prometheus.
"""


class _BlockStyleDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL, descriptions) as `|` blocks, as they are written by hand."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockStyleDumper.add_representer(str, _string)


def render(manifest_text: str) -> str:
    """The rule file for a Rules manifest; ValueError when it is not one."""
    manifest: Any = yaml.safe_load(manifest_text)
    if not isinstance(manifest, dict) or manifest.get("kind") != "Rules":
        raise ValueError(f"{RULES_MANIFEST} is not a Rules object")
    groups = manifest.get("spec", {}).get("groups")
    if not isinstance(groups, list) or not groups:
        raise ValueError(f"{RULES_MANIFEST} has no spec.groups")
    body = yaml.dump({"groups": groups}, Dumper=_BlockStyleDumper, sort_keys=False, width=100)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    args = parser.parse_args(argv)
    try:
        wanted = render((REPO_ROOT / RULES_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"sync_rules: {exc}", file=sys.stderr)
        return 2
    target = REPO_ROOT / RULE_FILE
    current = target.read_text(encoding="utf-8") if target.exists() else None
    if current == wanted:
        print(f"{RULE_FILE} is up to date")
        return 0
    if args.check:
        print(f"{RULE_FILE} differs from {RULES_MANIFEST}: run `make rules`", file=sys.stderr)
        return 1
    # Written beside the target and renamed: an interrupted run leaves the old file whole.
    partial = target.with_suffix(".yaml.partial")
    partial.write_text(wanted, encoding="utf-8")
    partial.replace(target)
    print(f"wrote {RULE_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
