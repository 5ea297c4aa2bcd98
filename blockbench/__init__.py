"""blockbench: measure whether a transformer block design is better than another, under identical training."""

from blockbench.blocks import BlockSpec, Gain, get_variant, register_block, variants
from blockbench.model import Model, ModelConfig, build_model

__version__ = "0.1.0"

__all__ = ["BlockSpec", "Gain", "Model", "ModelConfig", "build_model", "get_variant", "register_block", "variants",
           "__version__"]
