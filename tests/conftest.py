import os
from collections.abc import Iterator

import pytest
import torch

from blockbench.blocks import zoo

torch.set_num_threads(2)

# Ray clusters that tests start (ray.init, `ray start`) listen on loopback only, never on a network interface.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture(autouse=True)
def zoo_as_shipped() -> Iterator[None]:
    """Each test starts from the zoo's presets: a user block one test registers (`main(["--block", ...])` does,
    for the process's life, as the CLI should) must not reach the next test's `list` or `show`."""
    registered = dict(zoo._REGISTRY)
    yield
    zoo._REGISTRY.clear()
    zoo._REGISTRY.update(registered)
