"""The block zoo: named presets of BlockSpec, plus users' own blocks.

Every preset is a BlockSpec; nothing here is code beyond the registry. Where the paper and its code
(bobby-he/simplified_transformers) differ, the preset's `notes` say which one blockbench follows.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from blockbench.blocks.block import Block
from blockbench.blocks.model_args import ModelConfig
from blockbench.blocks.spec import POSITIONS, BlockSpec, Gain, SpecError

BlockFactory = Callable[[ModelConfig, int], nn.Module]


@dataclass(frozen=True)
class Variant:
    """A named block design: a BlockSpec preset, or a user factory (then `spec` is None)."""

    name: str
    description: str
    spec: BlockSpec | None = None
    factory: BlockFactory | None = None
    notes: str = ""
    # How a user factory's blocks know positions (a preset's spec says it itself): learned, rope or none.
    factory_positions: str = "learned"

    @property
    def positions(self) -> str:
        """The position scheme: the model adds a learned position embedding only for 'learned'."""
        return self.spec.positions if self.spec is not None else self.factory_positions

    def build_block(self, config: ModelConfig, layer_index: int, spec: BlockSpec | None = None) -> nn.Module:
        spec = spec or self.spec
        if spec is not None:
            return Block(config.d_model, config.n_heads, spec.for_layer(layer_index), causal=config.causal,
                         max_seq=config.seq_len)
        assert self.factory is not None
        try:
            return self.factory(config, layer_index)
        except Exception as exc:  # a user's factory failing is bad input, reported in one line
            raise SpecError(f"block {self.name!r}: factory(config, {layer_index}) raised "
                            f"{type(exc).__name__}: {exc}") from None


_TRAINABLE_ONE = Gain(1.0, True)
_SKIPLESS_ATTENTION = dict(alpha_sa=Gain(0.0), beta_sa=_TRAINABLE_ONE, beta_ff=Gain(0.1, True))
_SAS = BlockSpec(
    attention="shaped", query_init_std=0.0, value="identity", proj="identity",
    first_block={"value": "reparam_identity"}, alpha_ff=_TRAINABLE_ONE, **_SKIPLESS_ATTENTION,
)
_SAS_P = _SAS.replace(layout="parallel", alpha_ff=Gain(0.0))

# What separates every preset from the authors' code (bobby-he/simplified_transformers) once the rest matches;
# each is one override, and AUTHORS_CODE sets all three (docs/zoo.md, "The authors' code exactly").
AUTHORS_CODE: dict[str, Any] = {"qk_bias": True, "final_norm": "layer", "norm_eps_placement": "outside"}
_AUTHORS_DIFFERENCES = (
    "Differs from the authors' code in: (1) no Q/K bias (theirs: trainable, zero-init, not decayed; the query "
    "half trains) -> qk_bias=true; (2) the final norm is RMSNorm (theirs: HF's ln_f LayerNorm, whose bias acts "
    "as a learned logit bias through the tied head) -> final_norm=layer; (3) RMSNorm adds eps inside the sqrt "
    "(theirs: x / (rms(x) + eps); only matters where rms(x) < ~0.03) -> norm_eps_placement=outside. Their frozen "
    "zero V/P/MLP biases and frozen gain scalars are counted by their parameter total but change nothing."
)

# Crammed BERT's conventions (Geiping & Goldstein 2023, as the paper ran its BERT blocks, spec 4.4), as spec
# overrides: LayerNorm with eps 1e-12, a GEGLU MLP of width 3072 at d=768 (the up-projection; the gated half feeds
# a 1536-wide down-projection), and beta_FF initialised at 0.05 for the skipless blocks (those whose beta_FF
# trains). crammed_bert(name) gives one preset's overrides; the BERT suites spell them out per variant.
CRAMMED_BERT: dict[str, Any] = {"norm": "layer", "norm_eps": 1e-12, "activation": "geglu", "mlp_ratio": 4.0}
CRAMMED_BETA_FF = 0.05


def crammed_bert(name: str) -> dict[str, Any]:
    """The Crammed BERT overrides for preset `name`: a norm-free preset keeps no block norm (its first-block
    input norm becomes the LayerNorm), and a trained beta_FF starts at 0.05."""
    spec = get_variant(name).spec
    if spec is None:
        raise SpecError(f"{name!r} is a user factory block; the Crammed BERT overrides are BlockSpec fields")
    overrides = dict(CRAMMED_BERT)
    if spec.norm == "none":
        overrides["norm"] = "none"
        overrides["first_block"] = {**spec.first_block, "norm": "layer"}
    if spec.beta_ff.trainable:
        overrides["beta_ff"] = {"init": CRAMMED_BETA_FF, "trainable": True}
    return overrides


def _preset(name: str, description: str, spec: BlockSpec, notes: str) -> Variant:
    return Variant(name, description, spec=spec, notes=f"{notes} {_AUTHORS_DIFFERENCES}")


PAPER_PRESETS: tuple[Variant, ...] = (
    _preset("pre_ln", "Pre-LN baseline: x + MHA(N(x)), then h + MLP(N(h))", BlockSpec(),
            "Follows the paper's code (model=default): RMSNorm, ReLU MLP (r=4), no biases on W^V, W^P or the MLP, "
            "N(0, 0.02^2) init without GPT-2's 1/sqrt(2L) scaling, all gains fixed at 1; Q, K and V in one "
            "fused GEMM (theirs: QK fused, V separate; the same function)."),
    _preset("post_ln", "Post-LN: h = N(x + MHA(x)), out = N(h + MLP(h))", BlockSpec(norm_position="post"),
            "Not run in the paper. Standard Post-LN; the repo's variant (norm_position=post) also normalises the "
            "embedding input, blockbench does not."),
    _preset("parallel", "Parallel (GPT-J/PaLM): x + MHA(N(x)) + MLP(N(x))",
            BlockSpec(layout="parallel", alpha_sa=Gain(0.0)),
            "Follows model=default-parallel. One shared norm per block; the repo builds an unused second norm "
            "(counted in its total, no gradient), blockbench does not."),
    _preset("naive_skipless", "Negative control: Pre-LN without the attention skip",
            BlockSpec(alpha_sa=Gain(0.0)),
            "Plain softmax attention and W^V/W^P, MLP skip kept, fixed gains (model=default with "
            "attn_block_skip_gain=0). Expected to train badly (rank collapse); its small early activations are "
            "where the eps placement shows most."),
    _preset("vskipinit", "V-SkipInit (paper's runs): shaped attn, trainable orth W^V/W^P",
            BlockSpec(attention="shaped", query_init_std=0.0, value="orthogonal", proj="orthogonal",
                      alpha_ff=_TRAINABLE_ONE, **_SKIPLESS_ATTENTION),
            "The repo's baseline_comparison.sh flags (centred shaped attention, W^Q = 0, beta_SA = 1, "
            "beta_FF = 0.1, alpha_FF = 1 trainable), not Eq. 4; see vskipinit_eq4 for the equation as printed. "
            "The repo also makes the unused alpha_SA trainable (no gradient); blockbench fixes it at 0."),
    _preset("vskipinit_eq4", "V-SkipInit as Eq. 4: alpha I + beta A, orth W^V/W^P",
            BlockSpec(attention="value_skipinit", attn_alpha=_TRAINABLE_ONE, attn_beta=Gain(0.0, True),
                      value="orthogonal", proj="orthogonal", alpha_ff=_TRAINABLE_ONE, **_SKIPLESS_ATTENTION),
            "alpha = 1, beta = 0 per head, trainable (the paper leaves the granularity open); W^Q keeps its "
            "N(0, 0.02^2) init; block gains as vskipinit. No repo config runs it; the differences below are "
            "those of the repo's conventions."),
    _preset("sas", "SAS: shaped attn, no attn skip, W^V = W^P = I", _SAS,
            "Spec 2.6 (model=skipless): W^Q = 0; alpha_h = beta_h = gamma_h = 1 trainable; beta_SA = 1, "
            "beta_FF = 0.1, alpha_FF = 1 trainable; block 1 keeps W^V = alpha_V I + beta_V dW (dW = 0, "
            "alpha_V = beta_V = 1 trainable). The repo also makes the unused alpha_SA trainable (no gradient); "
            "blockbench fixes it at 0."
            " At init the block is the identity on its normalised input (W^Q = 0, W^V = W^P = I), so with the "
            "tied head the input token's own logit is about d*sigma/sqrt(2) (10.9 at d=768): the step-0 loss is "
            "~10.7 at d=768 against ln V = 8.3, as in the authors' code (10.57 at the same shape); `blockbench "
            "show` gives the figure for any width."),
    _preset("sas_p", "SAS-P: parallel SAS, no skips at all", _SAS_P,
            "Spec 2.7 (model=skipless-parallel): as sas, in the parallel layout with alpha_comb fixed at 0; the "
            "repo builds an unused second norm, blockbench does not."
            " At init the block is the identity on its normalised input (W^Q = 0, W^V = W^P = I), so with the "
            "tied head the input token's own logit is about d*sigma/sqrt(2) (10.9 at d=768): the step-0 loss is "
            "~10.7 at d=768 against ln V = 8.3, as in the authors' code (10.57 at the same shape); `blockbench "
            "show` gives the figure for any width."),
    _preset("sas_p_nonorm", "SAS-P without normalisation",
            _SAS_P.replace(norm="none", first_block={"value": "reparam_identity", "norm": "rms"}),
            "Spec 2.8 follows the repo: block 1 keeps a norm on its input and the model's final norm stays. "
            "blockbench's block-1 norm is an RMSNorm where the repo's is a LayerNorm (theirs: first_block = "
            "{value=reparam_identity, norm=layer}, a spec change no suite override reaches), so (3) below applies "
            "to that one norm only."
            " At init the block is the identity on its normalised input (W^Q = 0, W^V = W^P = I), so with the "
            "tied head the input token's own logit is about d*sigma/sqrt(2) (10.9 at d=768): the step-0 loss is "
            "~10.7 at d=768 against ln V = 8.3, as in the authors' code (10.57 at the same shape); `blockbench "
            "show` gives the figure for any width."),
)

# Today's baselines: the "Transformer++" recipe (pre-norm RMSNorm, RoPE, SwiGLU, no biases; LLaMA, OLMo 2,
# nanochat) and its common variations, each held to a reference nobody here wrote
# (tests/blocks/test_modern_reference.py, `transformers` 5.25 at fp32: outputs and gradients within 1e-5 with the
# weights copied across).
_TRANSFORMER_PP = BlockSpec(positions="rope", activation="swiglu", bias=False)
_MODERN_COMMON = (
    "RoPE with theta 10,000 in transformers' half-split layout (rotate_half pairs dimension i with i + d_head/2, "
    "not neighbours), applied per head after QK-norm (where there is one) and before attention; SwiGLU of hidden "
    "width LLaMA's rule, int(8/3 d) rounded up to a multiple of 64 (384 at d = 128), the gate and up maps held as "
    "one GEMM; no biases; RMSNorm with eps 1e-5 inside the sqrt (LLaMA 2's); Q, K and V in "
    "one fused GEMM (the references: three; the same function); no learned position embedding. Around the blocks "
    "blockbench's model, as for every preset: a final RMSNorm, the head tied to the token embedding (LLaMA 2 and "
    "OLMo 2 untie it), N(0, 0.02^2) init of every matrix (OLMo 2: a truncated normal)."
)


def _modern(name: str, description: str, spec: BlockSpec, notes: str) -> Variant:
    return Variant(name, description, spec=spec, notes=f"{notes} {_MODERN_COMMON}")


MODERN_PRESETS: tuple[Variant, ...] = (
    _modern("transformer_pp", "Transformer++ (LLaMA): RMSNorm pre-norm, RoPE, SwiGLU, no biases", _TRANSFORMER_PP,
            "The recipe of LLaMA (transformers' LlamaDecoderLayer, which the reference test matches): "
            "h = x + W_o attn(RoPE(W_q n1(x)), RoPE(W_k n1(x)), W_v n1(x)), "
            "y = h + W_down(silu(W_gate n2(h)) * W_up n2(h))."),
    _modern("transformer_pp_qknorm", "Transformer++ with per-head QK-norm (Qwen3 / Gemma 3)",
            _TRANSFORMER_PP.replace(qk_norm="head"),
            "transformer_pp plus an RMSNorm (weight of width d_head, shared by the heads) on each head's queries "
            "and keys before RoPE: the per-head convention of Qwen3 and Gemma 3 (transformers' Qwen3DecoderLayer, "
            "which the reference test matches), not OLMo 2's whole-vector norm (see olmo2)."),
    _modern("olmo2", "OLMo 2: reordered norm on each sublayer's output, whole-vector QK-norm",
            _TRANSFORMER_PP.replace(norm_position="output", qk_norm="whole"),
            "transformers' Olmo2DecoderLayer (the reference test matches it): h = x + N_attn(attn(x)), "
            "y = h + N_mlp(mlp(h)), no input norm; QK-norm is one RMSNorm over all heads' queries (width d) and one "
            "over the keys, before the split into heads and before RoPE."),
    _modern("peri_ln", "Peri-LN / Gemma 2 sandwich: norm on each sublayer's input and output",
            _TRANSFORMER_PP.replace(norm_position="peri"),
            "Peri-LN (Kim et al. 2025), the placement of Gemma 2's sandwich norm, on the Transformer++ base: "
            "h = x + N_out(attn(N_in(x))), y = h + N_out'(mlp(N_in'(h))). No reference layer in transformers has "
            "it with LLaMA's conventions (Gemma 2 adds its (1 + w) RMSNorm, GeGLU and attention soft-capping), so "
            "its test checks the placement term by term against olmo2 and transformer_pp."),
    _modern("sas_p_pp", "SAS-P on the Transformer++ base: shaped parallel block, RoPE, SwiGLU",
            _SAS_P.replace(positions="rope", activation="swiglu", bias=False),
            "The paper's SAS-P (spec 2.7: parallel layout, shaped attention, W^V = W^P = I, W^Q = 0 at init, no "
            "skips, block 1's W^V reparametrised) with RoPE on its queries and keys and a SwiGLU MLP. With W^Q = 0 "
            "the rotated queries are 0 too, so at init the attention is still alpha I + beta C - gamma C = I: the "
            "block is the identity on its normalised input, as SAS-P's is (a test says so). beta_FF = 0.1 scales "
            "the SwiGLU branch as it does the ReLU one."),
)
PRESETS = PAPER_PRESETS + MODERN_PRESETS

_REGISTRY: dict[str, Variant] = {v.name: v for v in PRESETS}
# One rule for every name that becomes part of a path (variants: OUT/records/VARIANT-seedN.json; suites and
# their versions: runs/SUITE/VERSION/): portable file-name characters, not hidden, not '.' or '..', not too long.
NAME_MAX = 100
_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*")


def name_problem(name: object) -> str:
    """Why `name` cannot name a variant, a suite or a suite version ('' when it can)."""
    if not isinstance(name, str):
        return f"expected a string, got {type(name).__name__}"
    if not name:
        return "empty"
    shown = repr(name if len(name) <= 40 else name[:40] + "...")
    if len(name) > NAME_MAX:
        return f"{shown} is {len(name)} characters long (at most {NAME_MAX})"
    if name.startswith("."):
        return f"{shown} starts with '.'"
    if not _NAME.fullmatch(name):
        return f"{shown}: use only letters, digits and '_', '.', '+', '-' (no '/', spaces or other characters)"
    return ""


class UnknownVariantError(SpecError):
    pass


def register_block(name: str, block: BlockSpec | BlockFactory, description: str = "",
                   *, replace: bool = False, positions: str | None = None) -> Variant:
    """Add a block design under `name`.

    `block` is a BlockSpec, or a factory called as factory(config, layer_index) for each of the model's
    config.n_layers blocks (layer_index 0-based). config is a blockbench.ModelConfig (d_model, n_heads,
    n_layers, seq_len, vocab_size). The returned nn.Module maps a (batch, seq, d_model) tensor to a tensor of
    the same shape and must be causal: output t may depend on inputs <= t only. Its parameters are trained like
    any block's: tensors with >= 2 dims get weight decay, the rest do not.

    positions (factories only; a BlockSpec says it in its `positions` field): "learned" (default: the model adds
    a learned position embedding to the blocks' input), "rope" (the blocks rotate their own queries and keys, e.g.
    with blockbench.blocks.rope.Rotary; the model adds nothing) or "none". A factory may also carry it as an
    attribute, `factory.positions = "rope"`, which is how `--block module:factory` says it.
    """
    problem = name_problem(name)
    if problem:
        raise SpecError(f"invalid block name: {problem}")
    if name in _REGISTRY and not replace:
        raise SpecError(f"block {name!r} is already registered")
    if isinstance(block, BlockSpec):
        if positions is not None and positions != block.positions:
            raise SpecError(f"block {name!r}: a BlockSpec states its positions in its own field "
                            f"(positions={block.positions!r})")
        variant = Variant(name, description or "user BlockSpec", spec=block)
    elif callable(block):
        scheme = positions if positions is not None else getattr(block, "positions", "learned")
        if scheme not in POSITIONS:
            raise SpecError(f"block {name!r}: positions={scheme!r} is not one of {', '.join(POSITIONS)}")
        variant = Variant(name, description or (getattr(block, "__doc__", None) or "user block").strip()
                          .splitlines()[0], factory=block, factory_positions=scheme)
    else:
        raise SpecError(f"block {name!r}: expected a BlockSpec or a factory(config, layer_index), got {block!r}")
    _REGISTRY[name] = variant
    return variant


def get_variant(name: str) -> Variant:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownVariantError(f"unknown variant {name!r}; known: {', '.join(_REGISTRY)}") from None


def variants() -> list[Variant]:
    return list(_REGISTRY.values())


def load_block_path(path: str, name: str | None = None) -> Variant:
    """Import 'module.path:attr' and register it; attr is a BlockSpec, a factory, or a Variant-returning call."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise SpecError(f"--block {path!r}: expected 'module.path:factory'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the user's module, reported in one line
        raise SpecError(f"--block {path!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    obj: Any = getattr(module, attr, None)
    if obj is None:
        raise SpecError(f"--block {path!r}: module {module_name!r} has no attribute {attr!r}")
    if not isinstance(obj, BlockSpec) and not callable(obj):
        raise SpecError(f"--block {path!r}: {attr!r} is neither a BlockSpec nor a callable factory")
    return register_block(name or attr, obj, replace=True)

