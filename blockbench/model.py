"""Language model: token embedding (+ a learned position embedding for variants whose positions are 'learned'), a
stack of blocks, final norm, the workload's head (if any), tied unembedding (soft-capped where the spec says so).

The blocks come from the zoo (a BlockSpec preset or a user factory); everything around them is shared, so two
variants differ only in their blocks. The workload (ModelConfig.workload) picks the attention mask the blocks are
built with (causal for causal_lm, none for masked_lm) and the head; the same preset serves every workload.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blockbench.blocks.model_args import ModelConfig  # defined beside BlockSpec; `blockbench.model.ModelConfig` stays
from blockbench.blocks.norms import make_norm
from blockbench.blocks.ranges import scope
from blockbench.blocks.spec import BlockSpec, SpecError
from blockbench.blocks.zoo import Variant
from blockbench.workloads import get_workload


def make_final_norm(spec: BlockSpec | None, dim: int) -> nn.Module:
    """The norm before the tied head. final_norm='auto' is the blocks' norm, and RMSNorm for blocks without one
    (a model without block norms still ends in a norm: the paper's code keeps its final LayerNorm); a user factory
    block gets RMSNorm. A LayerNorm's bias acts, through the tied head, as a learned logit bias."""
    if spec is None:
        return make_norm("rms", dim, 1e-5)
    kind = spec.final_norm
    if kind == "auto":
        kind = spec.norm if spec.norm != "none" else "rms"
    return make_norm(kind, dim, spec.norm_eps, spec.norm_eps_placement)


class Model(nn.Module):
    def __init__(self, config: ModelConfig, variant: Variant, spec: BlockSpec | None = None,
                 init_std: float = 0.02) -> None:
        """spec overrides the variant's preset (ablations); it must be None for a user factory block."""
        super().__init__()
        self.config = config
        self.spec = spec or variant.spec
        self.positions = self.spec.positions if self.spec is not None else variant.positions
        self.logit_softcap = None if self.spec is None else self.spec.logit_softcap
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        nn.init.normal_(self.tok_emb.weight, std=init_std)
        # RoPE and NoPE variants have no position-embedding parameters (RoPE lives in the blocks' attention).
        self.pos_emb = nn.Embedding(config.seq_len, config.d_model) if self.positions == "learned" else None
        if self.pos_emb is not None:
            nn.init.normal_(self.pos_emb.weight, std=init_std)
        blocks = []
        for index in range(config.n_layers):
            block = variant.build_block(config, index, self.spec)
            if not isinstance(block, nn.Module):
                raise SpecError(f"block {variant.name!r}: factory returned {type(block).__name__}, not an nn.Module")
            blocks.append(block)
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = make_final_norm(self.spec, config.d_model)
        # Built last, so that the embeddings and blocks of a seed are the same under every workload.
        head = get_workload(config.workload).make_head(
            config.d_model, lambda: make_final_norm(self.spec, config.d_model), init_std)
        if head is not None:
            self.head = head

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V), or the mean cross-entropy in nats over the targets that are not -100 (the workload
        sets them: the next token for causal_lm, the original token at masked positions for masked_lm).
        key_mask (B, T), True at real tokens, makes attention ignore padding; None: nothing is padded."""
        x = self.embed(idx)
        for index, block in enumerate(self.blocks):
            with scope(f"block{index}"):
                x = block(x) if key_mask is None else block(x, key_mask)
        with scope("final_norm"):
            x = self.final_norm(x)
        if hasattr(self, "head"):
            with scope("mlm_head"):
                x = self.head(x)
        with scope("head"):
            logits = F.linear(x, self.tok_emb.weight)
            if self.logit_softcap is not None:  # in float32: tanh of bf16 logits would round the cap's slope
                cap = self.logit_softcap
                logits = torch.tanh(logits.float() / cap) * cap
        if targets is None:
            return logits
        with scope("loss"):
            return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """The blocks' input: token embeddings, plus the learned position embedding where the variant has one."""
        seq = idx.shape[1]
        if seq > self.config.seq_len:
            raise ValueError(f"sequence of {seq} tokens exceeds seq_len={self.config.seq_len}")
        with scope("embed"):
            x = self.tok_emb(idx)
            return x if self.pos_emb is None else x + self.pos_emb(torch.arange(seq, device=idx.device))

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Weight decay on matrices and embeddings only; gains, norm scales and biases are never decayed."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]


def build_model(variant: Variant, config: ModelConfig, spec: BlockSpec | None = None, seed: int = 0) -> Model:
    """The same seed gives the same embeddings for every variant (they are created before the blocks)."""
    if spec is not None and variant.spec is None:
        raise SpecError(f"variant {variant.name!r} is a user factory block; spec overrides do not apply to it")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Model(config, variant, spec)
