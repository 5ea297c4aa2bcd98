"""BlockSpec: one dataclass that describes every block in the zoo.

A preset (see zoo.py) is a BlockSpec; an ablation is a preset with some fields replaced, so no new code is
needed to ask e.g. for Pre-LN with identity values or SAS without its MLP skip. Field names follow the paper
(He & Hofmann 2024, Eq. 1, 4, 5, 6): alpha_* multiply skips, beta_* multiply branches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from blockbench.errors import BlockbenchError

LAYOUTS = ("sequential", "parallel")
NORMS = ("rms", "layer", "none")
# The model's last norm, before the tied head. auto: the blocks' norm, RMSNorm when the blocks have none (what
# blockbench has always built); layer: a LayerNorm with its trainable bias, as the authors' HF GPT-2 ln_f.
FINAL_NORMS = ("auto", "rms", "layer")
# Where RMSNorm adds eps: inside_sqrt, x / sqrt(mean(x^2) + eps) (torch's fused kernel); outside, x / (rms(x) + eps)
# (the authors' RMSNorm). LayerNorm always adds it inside the sqrt, as torch's and HF's do.
EPS_PLACEMENTS = ("inside_sqrt", "outside")
# pre: x + F(N(x)); post: N(x + F(x)); output: x + N(F(x)), no input norm (OLMo 2's reordered norm); peri: both,
# x + N_out(F(N_in(x))) (Peri-LN, Gemma 2's "sandwich").
NORM_POSITIONS = ("pre", "post", "output", "peri")
# How the model knows positions: learned (an absolute embedding added to the input, GPT-2 and the paper), rope
# (rotary embeddings on queries and keys in every attention, half-split layout as transformers' LLaMA), none (NoPE).
POSITIONS = ("learned", "rope", "none")
# RMSNorm on queries and keys before RoPE: head (per head over d_head, Qwen3 / Gemma 3) or whole (over all heads'
# d_model at once, before the split into heads: OLMo 2). modern-blocks.md: the two are different functions.
QK_NORMS = ("none", "head", "whole")
ATTENTIONS = ("softmax", "shaped", "value_skipinit")
# linear: trainable d x d matrix, N(0, 0.02^2); orthogonal: trainable, random orthogonal init;
# identity: the matrix is removed; reparam_identity / reparam_orthogonal: Eq. 6, W = alpha W_init + beta dW
# with W_init fixed (identity or random orthogonal) and dW trainable, zero-initialised.
VALUE_PROJ_KINDS = ("linear", "orthogonal", "identity", "reparam_identity", "reparam_orthogonal")
# geglu: value * GELU(gate) over the two halves of the up-projection, whose width stays mlp_ratio * d (Crammed BERT).
# swiglu: SiLU(x W_gate) * (x W_up) -> W_down (LLaMA), hidden width (2/3) mlp_ratio d rounded up to a multiple of
# mlp_multiple_of (8/3 d -> a multiple of 64 at r = 4), so its three matrices hold about what a 4d MLP's two do.
# relu2: ReLU(x)^2 (Primer; the modded-nanogpt speedrun), hidden width mlp_ratio * d.
ACTIVATIONS = ("relu", "gelu", "geglu", "swiglu", "relu2")
# Fields that describe the model around the blocks, kept on the spec so a variant carries them (one override).
MODEL_FIELDS = ("final_norm", "positions", "logit_softcap")


class SpecError(BlockbenchError, ValueError):
    """A BlockSpec (or an override of one) that cannot be built."""


@dataclass(frozen=True)
class Gain:
    """A scalar gain: its initial value and whether it is trained."""

    init: float
    trainable: bool = False

    @classmethod
    def parse(cls, value: Any, name: str) -> Gain:
        """Accept a Gain, a number (fixed gain) or a mapping {init, trainable} (how suites and CLIs write it)."""
        if isinstance(value, Gain):
            return value
        if isinstance(value, bool):
            raise SpecError(f"{name}: expected a number or {{init, trainable}}, got {value!r}")
        if isinstance(value, (int, float)):
            return cls(float(value), False)
        if isinstance(value, dict):
            unknown = set(value) - {"init", "trainable"}
            if unknown or "init" not in value:
                raise SpecError(f"{name}: expected keys init (and optionally trainable), got {sorted(value)}")
            init, trainable = value["init"], value.get("trainable", False)
            if isinstance(init, bool) or not isinstance(init, (int, float)) or not isinstance(trainable, bool):
                raise SpecError(f"{name}: init must be a number and trainable a boolean")
            return cls(float(init), trainable)
        raise SpecError(f"{name}: expected a number or {{init, trainable}}, got {value!r}")


@dataclass(frozen=True)
class BlockSpec:
    """Everything that distinguishes one transformer block design from another.

    Sequential:  h = beta_sa * MHA(N1(x)) + alpha_sa * x ;  out = beta_ff * MLP(N2(h)) + alpha_ff * h
    Parallel:    out = beta_sa * MHA(N(x)) + beta_ff * MLP(N(x)) + alpha_ff * x   (alpha_ff is alpha_comb;
                 alpha_sa must be 0: a parallel block has one skip)
    Post-norm (sequential only): h = N1(alpha_sa * x + beta_sa * MHA(x)) ; out = N2(alpha_ff * h + beta_ff * MLP(h))
    Output norm (sequential only): h = beta_sa * No1(MHA(x)) + alpha_sa * x ; out = beta_ff * No2(MLP(h)) + alpha_ff * h
    Peri norm (sequential only): as output norm with the pre-norm's N1, N2 on the sublayers' inputs as well.
    A skip whose gain is fixed at 0 is not computed at all.

    Attention matrix, per head h:  softmax: A ;  shaped: alpha_h I + beta_h A - gamma_h C ;
    value_skipinit: alpha_h I + beta_h A, with C the causal centring matrix (row i uniform over tokens <= i).
    """

    layout: str = "sequential"
    norm: str = "rms"
    norm_position: str = "pre"
    norm_eps: float = 1e-5
    norm_eps_placement: str = "inside_sqrt"
    # Model-level, kept on the spec so that "the authors' final LayerNorm" is one override like any other.
    final_norm: str = "auto"
    attention: str = "softmax"
    value: str = "linear"
    proj: str = "linear"
    # Eq. 6 gains of a reparameterised value/projection matrix (unused for other kinds).
    reparam_alpha: Gain = Gain(1.0, True)
    reparam_beta: Gain = Gain(1.0, True)
    alpha_sa: Gain = Gain(1.0)
    beta_sa: Gain = Gain(1.0)
    alpha_ff: Gain = Gain(1.0)
    beta_ff: Gain = Gain(1.0)
    # Per-head attention-matrix scalars for shaped / value_skipinit attention (ignored for softmax).
    attn_alpha: Gain = Gain(1.0, True)
    attn_beta: Gain = Gain(1.0, True)
    attn_gamma: Gain = Gain(1.0, True)
    # A trainable bias on Q and K (2d values, zero-init, never weight-decayed), as the authors' fused QK layer has.
    # The key half is inert (softmax ignores a shift shared by a query's logits); the query half trains.
    qk_bias: bool = False
    query_init_std: float = 0.02
    init_std: float = 0.02
    activation: str = "relu"
    mlp_ratio: float = 4.0
    mlp_multiple_of: int = 64
    # A bias on every linear map of the block (Q/K/V, W^P, the MLP), zero-initialised, as GPT-2 has; the paper's
    # code freezes them at zero and Transformer++ has none, so every preset says false.
    bias: bool = False
    qk_norm: str = "none"
    positions: str = "learned"
    rope_theta: float = 10_000.0
    # Output logits capped as cap * tanh(logits / cap) (Gemma 2: 30; the speedrun: 15); None: no cap.
    logit_softcap: float | None = None
    # Field overrides that apply to the first block only, e.g. {"value": "reparam_identity"} for SAS.
    first_block: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("reparam_alpha", "reparam_beta", "alpha_sa", "beta_sa", "alpha_ff", "beta_ff",
                     "attn_alpha", "attn_beta", "attn_gamma"):
            object.__setattr__(self, name, Gain.parse(getattr(self, name), name))
        self.validate()

    def validate(self) -> None:
        choices = {"layout": LAYOUTS, "norm": NORMS, "norm_position": NORM_POSITIONS,
                   "attention": ATTENTIONS, "value": VALUE_PROJ_KINDS, "proj": VALUE_PROJ_KINDS,
                   "activation": ACTIVATIONS, "final_norm": FINAL_NORMS, "norm_eps_placement": EPS_PLACEMENTS,
                   "positions": POSITIONS, "qk_norm": QK_NORMS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise SpecError(f"{name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if not self.mlp_ratio > 0:
            raise SpecError(f"mlp_ratio must be positive, got {self.mlp_ratio}")
        if not self.norm_eps > 0:
            raise SpecError(f"norm_eps must be positive, got {self.norm_eps}")
        for name in ("qk_bias", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise SpecError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if isinstance(self.mlp_multiple_of, bool) or not isinstance(self.mlp_multiple_of, int) \
                or self.mlp_multiple_of < 1:
            raise SpecError(f"mlp_multiple_of must be a positive integer, got {self.mlp_multiple_of!r}")
        if isinstance(self.rope_theta, bool) or not isinstance(self.rope_theta, (int, float)) \
                or not 0 < self.rope_theta < float("inf"):
            raise SpecError(f"rope_theta must be a positive number, got {self.rope_theta!r}")
        cap = self.logit_softcap
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float))
                                or not 0 < cap < float("inf")):
            raise SpecError(f"logit_softcap must be a positive number (or absent for no cap), got {cap!r}")
        if self.query_init_std < 0 or self.init_std < 0:
            raise SpecError("init standard deviations must be >= 0")
        if self.layout == "parallel":
            if self.norm_position != "pre":
                raise SpecError(f"norm_position={self.norm_position!r} is only defined for the sequential layout")
            if self.alpha_sa.init != 0 or self.alpha_sa.trainable:
                raise SpecError("a parallel block has a single skip, alpha_ff (alpha_comb); set alpha_sa=0")
        if self.norm_position != "pre" and self.norm == "none":
            raise SpecError(f"norm_position={self.norm_position!r} needs a norm")
        valid = {f.name for f in dataclasses.fields(self)} - {"first_block"}
        bad = set(self.first_block) - valid
        for name in MODEL_FIELDS:
            if name in self.first_block:
                raise SpecError(f"{name} is a model-level field; first_block cannot override it")
        if bad:
            raise SpecError(f"first_block overrides unknown fields: {', '.join(sorted(bad))}")

    def replace(self, **overrides: Any) -> BlockSpec:
        """A copy with fields replaced; unknown field names are an error that lists the valid ones."""
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - valid
        if unknown:
            raise SpecError(f"unknown BlockSpec field(s) {', '.join(sorted(unknown))}; "
                            f"valid: {', '.join(sorted(valid))}")
        return dataclasses.replace(self, **overrides)

    def mlp_hidden(self, dim: int) -> int:
        """The width the MLP's down-projection reads: r d; half of that for GEGLU (the up-projection's halves);
        (2/3) r d rounded up to a multiple of mlp_multiple_of for SwiGLU (its gate and up maps each have it)."""
        if self.activation == "swiglu":
            multiple = self.mlp_multiple_of
            return -(-int(2 * self.mlp_ratio * dim / 3) // multiple) * multiple  # LLaMA's rule
        hidden = round(self.mlp_ratio * dim)
        if self.activation == "geglu" and hidden % 2:
            raise SpecError(f"a GEGLU MLP splits its hidden width in two halves; {hidden} is odd (mlp_ratio * d)")
        return hidden // 2 if self.activation == "geglu" else hidden

    def check_shape(self, dim: int, heads: int) -> None:
        """Raise SpecError, naming the field, if this spec cannot be built at width `dim` with `heads` heads."""
        for layer in (self, self.for_layer(0)):
            if layer.positions == "rope" and (dim // heads) % 2:
                raise SpecError(f"positions='rope' needs an even head dimension; d_model / n_heads = {dim} / "
                                f"{heads} = {dim // heads}")
            layer.mlp_hidden(dim)

    def mlp_rule(self, dim: int) -> str:
        """The MLP's hidden-width rule in words, with its value at width `dim` (for `blockbench show`)."""
        hidden = self.mlp_hidden(dim)
        if self.activation == "swiglu":
            return (f"SwiGLU: gate and up maps of width (2/3) x {self.mlp_ratio:g} x d rounded up to a multiple of "
                    f"{self.mlp_multiple_of} = {hidden} at d = {dim} (3 matrices of d x {hidden})")
        if self.activation == "geglu":
            return (f"GEGLU: up-projection of width {self.mlp_ratio:g} x d = {2 * hidden} at d = {dim}, its two "
                    f"halves gated into a down-projection of width {hidden}")
        return f"{self.activation}: width {self.mlp_ratio:g} x d = {hidden} at d = {dim}"

    def for_layer(self, index: int) -> BlockSpec:
        """The spec block `index` (0-based) is built from: the first block applies its exceptions."""
        if index == 0 and self.first_block:
            return dataclasses.replace(self, first_block={}, **self.first_block)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, recorded with every run so a result can be traced to the exact block."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlockSpec:
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - valid
        if unknown:
            raise SpecError(f"unknown BlockSpec field(s) {', '.join(sorted(unknown))}")
        return cls(**data)
