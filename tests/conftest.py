import os

import torch

torch.set_num_threads(2)

# Ray clusters that tests start (ray.init, `ray start`) listen on loopback only, never on a network interface.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
