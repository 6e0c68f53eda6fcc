"""Small functions written per model, as dataclasses write __init__.

The hot paths unpack features and classes by position in literal tuples, dicts and
expressions, which is two to three times as fast as loops over them, and how many
features and classes there are is the model's. So their source is written when a model
is loaded. The source holds only generated identifiers (k0, w1_2, ...); every value,
from feature names to fitted weights, travels in the function's globals.
"""

from __future__ import annotations

from typing import Any


def generated(source: str, name: str, constants: dict[str, Any]) -> Any:
    """The function `name` defined by `source`, with `constants` as its globals."""
    namespace = dict(constants)
    exec(compile(source, f"<generated {name}>", "exec"), namespace)  # noqa: S102
    return namespace[name]
