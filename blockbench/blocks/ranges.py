"""Named ranges the model marks its parts with, for `blockbench profile` (measure/components.py).

`scope(name)` is a torch.profiler record_function only while a profiler is recording, or while components.py's
FLOP attribution is counting; otherwise it is a shared no-op context, so an ordinary training step pays one
C++ flag check per range (negligible against a step).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.autograd.profiler import record_function

PREFIX = "bb."
_NULL = contextlib.nullcontext()
# Names of the ranges open right now, innermost last, kept only while FLOPs are being attributed to them.
_stack: list[str] | None = None


def scope(name: str) -> contextlib.AbstractContextManager:
    """The range `bb.<name>` around a part of the forward pass; free unless something is recording."""
    # Under torch.compile the check below would break the graph (a torch.* call returning a bool); a compiled
    # region is profiled as a whole anyway.
    if torch.compiler.is_compiling() or (_stack is None and not torch.autograd._profiler_enabled()):
        return _NULL
    return _Range(PREFIX + name)


class _Range:
    __slots__ = ("name", "record")

    def __init__(self, name: str) -> None:
        self.name = name
        self.record = record_function(name)

    def __enter__(self) -> None:
        self.record.__enter__()
        if _stack is not None:
            _stack.append(self.name)

    def __exit__(self, *exc: object) -> None:
        if _stack is not None:
            _stack.pop()
        self.record.__exit__(*exc)


def current() -> str | None:
    """The innermost open range while attributing, else None."""
    return _stack[-1] if _stack else None


@contextlib.contextmanager
def tracking() -> Iterator[list[str]]:
    """Keep the stack of open ranges (FLOP attribution) for the duration; yields it."""
    global _stack
    previous, _stack = _stack, []
    try:
        yield _stack
    finally:
        _stack = previous
