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
NORM_POSITIONS = ("pre", "post")
ATTENTIONS = ("softmax", "shaped", "value_skipinit")
# linear: trainable d x d matrix, N(0, 0.02^2); orthogonal: trainable, random orthogonal init;
# identity: the matrix is removed; reparam_identity / reparam_orthogonal: Eq. 6, W = alpha W_init + beta dW
# with W_init fixed (identity or random orthogonal) and dW trainable, zero-initialised.
VALUE_PROJ_KINDS = ("linear", "orthogonal", "identity", "reparam_identity", "reparam_orthogonal")
# geglu: value * GELU(gate) over the two halves of the up-projection, whose width stays mlp_ratio * d (Crammed BERT).
ACTIVATIONS = ("relu", "gelu", "geglu")


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
                   "activation": ACTIVATIONS, "final_norm": FINAL_NORMS, "norm_eps_placement": EPS_PLACEMENTS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise SpecError(f"{name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if not self.mlp_ratio > 0:
            raise SpecError(f"mlp_ratio must be positive, got {self.mlp_ratio}")
        if not self.norm_eps > 0:
            raise SpecError(f"norm_eps must be positive, got {self.norm_eps}")
        if not isinstance(self.qk_bias, bool):
            raise SpecError(f"qk_bias must be true or false, got {self.qk_bias!r}")
        if self.query_init_std < 0 or self.init_std < 0:
            raise SpecError("init standard deviations must be >= 0")
        if self.layout == "parallel":
            if self.norm_position == "post":
                raise SpecError("norm_position='post' is only defined for the sequential layout")
            if self.alpha_sa.init != 0 or self.alpha_sa.trainable:
                raise SpecError("a parallel block has a single skip, alpha_ff (alpha_comb); set alpha_sa=0")
        if self.norm_position == "post" and self.norm == "none":
            raise SpecError("norm_position='post' needs a norm")
        valid = {f.name for f in dataclasses.fields(self)} - {"first_block"}
        bad = set(self.first_block) - valid
        if "final_norm" in self.first_block:
            raise SpecError("final_norm is a model-level field; first_block cannot override it")
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
