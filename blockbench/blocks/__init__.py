"""The block zoo: BlockSpec, Block, the named presets, and the ModelConfig blocks are built for."""

from blockbench.blocks.block import Block
from blockbench.blocks.model_args import ModelConfig
from blockbench.blocks.spec import BlockSpec, Gain, SpecError
from blockbench.blocks.zoo import PRESETS, Variant, get_variant, load_block_path, register_block, variants

__all__ = ["Block", "BlockSpec", "Gain", "ModelConfig", "SpecError", "PRESETS", "Variant", "get_variant",
           "load_block_path", "register_block", "variants"]
