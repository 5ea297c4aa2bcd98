"""Loading user blocks named on the command line (`--block [NAME=]module.path:attr`), in any process."""

from __future__ import annotations

import os
import sys

from blockbench.blocks.zoo import load_block_path


def register_user_blocks(paths: list[str] | tuple[str, ...] | None, cwd: str | None = None) -> None:
    """Register each user block. `cwd` is where the user's modules live (the driver's working directory, which a
    worker process on another node or in a Ray worker does not share), so it goes on sys.path first."""
    cwd = cwd or os.getcwd()
    if paths and cwd not in sys.path:
        sys.path.insert(0, cwd)
    for path in paths or []:
        name, sep, target = path.partition("=")
        load_block_path(target, name) if sep and ":" in target else load_block_path(path)
