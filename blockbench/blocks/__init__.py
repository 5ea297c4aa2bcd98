"""The block zoo: BlockSpec, Block and the named presets."""

from blockbench.blocks.block import Block
from blockbench.blocks.spec import BlockSpec, Gain, SpecError
from blockbench.blocks.zoo import PRESETS, Variant, get_variant, load_block_path, register_block, variants

__all__ = ["Block", "BlockSpec", "Gain", "SpecError", "PRESETS", "Variant", "get_variant", "load_block_path",
           "register_block", "variants"]
