"""The executor interface: a Job (one run), the Events an executor reports, and the Executor's methods.

See the package's docstring (blockbench/executors/__init__.py) for what each method does.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from blockbench.errors import BlockbenchError
from blockbench.suite import Suite


class ProbeDied(BlockbenchError):
    """The speed probe's process (or its node) died before it reported: like a run's worker dying, retryable.
    `payload` is a failure payload (error_type, message, traceback, host, retryable) for the runs that needed it."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(f"speed probe: {payload['message']}")
        self.payload = payload


@dataclass(frozen=True)
class Job:
    """One run: a (variant, seed) of a suite; `label` names the grid point of a sweep ('' for a plain run)."""

    suite: Suite
    variant: str
    seed: int
    static: dict[str, Any] | None = None
    block_paths: tuple[str, ...] = ()
    cwd: str = field(default_factory=os.getcwd)  # where user block modules are found
    label: str = ""
    attempt: int = 1

    @property
    def key(self) -> str:
        name = f"{self.variant} seed {self.seed}"
        return f"{self.label}: {name}" if self.label else name

    def retry(self) -> Job:
        return replace(self, attempt=self.attempt + 1)


@dataclass
class Event:
    kind: str  # "started" | "progress" | "result" | "failed"
    job: Job
    payload: dict[str, Any]


EmitFn = Callable[[Event], None]


class Executor(ABC):
    name: str = ""
    remote: bool = False  # runs train on other machines: the driver's own device does not matter

    @abstractmethod
    def probe(self, suite: Suite, block_paths: list[str]) -> dict[str, dict[str, dict[str, Any]]]: ...

    @abstractmethod
    def submit(self, job: Job) -> None: ...

    @abstractmethod
    def poll(self, emit: EmitFn, timeout: float) -> None: ...

    @abstractmethod
    def cancel(self) -> None: ...

    def close(self) -> None:
        return None
