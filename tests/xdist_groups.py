"""`xdist_group` marks that hold under pytest 9.

`make test` runs `pytest -n 2 --dist loadgroup`: pytest-xdist sends the tests of one
`xdist_group` to one worker, so a group can share an expensive fixture (a server, a Docker
registry, a base image) or keep its tests from running into each other. xdist 3.8 names an
item's group by appending `@<group>` to the node id it writes to `item._nodeid`; pytest 9
reads a node's id from `item._id` instead, so the suffix was lost and every group's tests
spread over both workers. `group_items` appends the suffix where it is missing and leaves
an id xdist did suffix alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from _pytest.nodeid import NodeId


def group_items(config: pytest.Config, items: Sequence[pytest.Item]) -> int:
    """Suffix the id of each item in an `xdist_group` with `@<group>` on a loadgroup
    worker, as xdist means to; returns how many ids it changed."""
    if not getattr(config.option, "loadgroup", False):  # set on xdist's workers only
        return 0
    changed = 0
    for item in items:
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        suffix = "@" + "_".join(sorted(names))
        if not names or item.nodeid.endswith(suffix):
            continue
        item._id = NodeId.parse(item.nodeid + suffix)  # pytest's own field: see the module doc
        changed += 1
    return changed
