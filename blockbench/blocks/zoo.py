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

from blockbench.blocks.args import ModelConfig
from blockbench.blocks.block import Block
from blockbench.blocks.spec import BlockSpec, Gain, SpecError

BlockFactory = Callable[[ModelConfig, int], nn.Module]


@dataclass(frozen=True)
class Variant:
    """A named block design: a BlockSpec preset, or a user factory (then `spec` is None)."""

    name: str
    description: str
    spec: BlockSpec | None = None
    factory: BlockFactory | None = None
    notes: str = ""

    def build_block(self, config: ModelConfig, layer_index: int, spec: BlockSpec | None = None) -> nn.Module:
        spec = spec or self.spec
        if spec is not None:
            return Block(config.d_model, config.n_heads, spec.for_layer(layer_index), causal=config.causal)
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
# each is one override, and AUTHORS_CODE sets all three (README, "The block zoo").
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


PRESETS: tuple[Variant, ...] = (
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
                   *, replace: bool = False) -> Variant:
    """Add a block design under `name`.

    `block` is a BlockSpec, or a factory called as factory(config, layer_index) for each of the model's
    config.n_layers blocks (layer_index 0-based). config is a blockbench.ModelConfig (d_model, n_heads,
    n_layers, seq_len, vocab_size). The returned nn.Module maps a (batch, seq, d_model) tensor to a tensor of
    the same shape and must be causal: output t may depend on inputs <= t only. Its parameters are trained like
    any block's: tensors with >= 2 dims get weight decay, the rest do not.
    """
    problem = name_problem(name)
    if problem:
        raise SpecError(f"invalid block name: {problem}")
    if name in _REGISTRY and not replace:
        raise SpecError(f"block {name!r} is already registered")
    if isinstance(block, BlockSpec):
        variant = Variant(name, description or "user BlockSpec", spec=block)
    elif callable(block):
        variant = Variant(name, description or (getattr(block, "__doc__", None) or "user block").strip()
                          .splitlines()[0], factory=block)
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

