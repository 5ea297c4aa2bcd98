"""Parameter counts, split the way the paper's claims are stated."""

from __future__ import annotations

from blockbench.model import Model


def count_params(model: Model) -> dict[str, int]:
    """total; embedding (token + position, where the variant learns one); block_matrices = numel of every >= 2-dim
    block parameter.

    params_block_matrices is the quantity of spec §7: L(4+2r)d^2 for Pre-LN and L(2+2r)d^2 + d^2 for SAS.
    Fixed tensors (buffers such as the identity W_init of Eq. 6) are not parameters and are not counted.
    """
    block_matrices = [sum(p.numel() for p in block.parameters() if p.ndim >= 2) for block in model.blocks]
    return {
        "params_total": sum(p.numel() for p in model.parameters()),
        "params_embedding": model.tok_emb.weight.numel()
        + (0 if model.pos_emb is None else model.pos_emb.weight.numel()),
        "params_block_matrices": sum(block_matrices),
        "params_per_block": [sum(p.numel() for p in block.parameters()) for block in model.blocks],
        "params_block_matrices_per_block": block_matrices,
    }
