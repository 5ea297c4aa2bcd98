"""Command-line values, read the same way by every subcommand and by the sweep's grid: a value as TOML reads it,
a comma-separated list. (The argument definitions the subcommands share live in commands/common.py.)"""

from __future__ import annotations

import tomllib
from typing import Any

from blockbench.errors import BlockbenchError


def parse_value(text: str) -> Any:
    """A command-line value as TOML would read it (numbers, booleans, inline tables), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def split_list(text: str | None, what: str, kind: type = str) -> list | None:
    if text is None:
        return None
    try:
        items = [kind(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError:
        raise BlockbenchError(f"{what}: expected a comma-separated list, got {text!r}") from None
    if not items:
        raise BlockbenchError(f"{what}: empty list")
    return items
