"""The modern presets against reference implementations nobody here wrote: `transformers`' LLaMA, Qwen3 and OLMo 2
decoder layers (built from a config, no hub access), with their weights copied into blockbench's blocks.

fp32, two layers stacked, T=64, d=128, 4 heads, SwiGLU width 384 (blockbench's rule at d=128, set as the
references' intermediate_size): outputs, input gradients and every parameter's gradient within 1e-5 of the
tensor's scale (max |ours - theirs| <= 1e-5 max |theirs|: the loss sums 16k outputs, so gradients are O(100) and
fp32 rounding alone differs by ~1e-4 in absolute terms, 4e-7 of the scale).
The references' norm scales are drawn away from 1, so a norm copied to the wrong place shows.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from blockbench import ModelConfig, get_variant  # noqa: E402
from blockbench.blocks.rope import apply_rope, rope_tables  # noqa: E402

D, HEADS, HIDDEN, T, LAYERS = 128, 4, 384, 64, 2
TOL = 1e-5
CONFIG = ModelConfig(vocab_size=257, seq_len=T, n_layers=LAYERS, d_model=D, n_heads=HEADS)


def reference_config(kind: str):  # noqa: ANN201 - a transformers config
    common = dict(hidden_size=D, intermediate_size=HIDDEN, num_attention_heads=HEADS, num_key_value_heads=HEADS,
                  rms_norm_eps=1e-5, max_position_embeddings=T, num_hidden_layers=LAYERS, vocab_size=257,
                  attention_bias=False, hidden_act="silu", head_dim=D // HEADS)
    config = {"llama": transformers.LlamaConfig, "qwen3": transformers.Qwen3Config,
              "olmo2": transformers.Olmo2Config}[kind](**common)
    config._attn_implementation = "sdpa"
    return config


def reference_layers(kind: str) -> tuple[list[torch.nn.Module], torch.nn.Module]:
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding
    from transformers.models.olmo2.modeling_olmo2 import Olmo2DecoderLayer, Olmo2RotaryEmbedding
    from transformers.models.qwen3.modeling_qwen3 import Qwen3DecoderLayer, Qwen3RotaryEmbedding

    layer_class, rotary_class = {"llama": (LlamaDecoderLayer, LlamaRotaryEmbedding),
                                 "qwen3": (Qwen3DecoderLayer, Qwen3RotaryEmbedding),
                                 "olmo2": (Olmo2DecoderLayer, Olmo2RotaryEmbedding)}[kind]
    config = reference_config(kind)
    torch.manual_seed(1)
    layers = [layer_class(config, index) for index in range(LAYERS)]
    for layer in layers:
        for name, param in layer.named_parameters():
            with torch.no_grad():
                if name.endswith("norm.weight") or "layernorm" in name:
                    param.copy_(1 + 0.3 * torch.randn_like(param))
                else:
                    param.normal_(std=0.05)
    return layers, rotary_class(config)


# reference parameter -> (blockbench parameter, rows of it) ; rows None: the whole tensor
def weight_map(kind: str) -> dict[str, tuple[str, slice | None]]:
    mapping = {
        "self_attn.q_proj.weight": ("attn.qkv.weight", slice(0, D)),
        "self_attn.k_proj.weight": ("attn.qkv.weight", slice(D, 2 * D)),
        "self_attn.v_proj.weight": ("attn.qkv.weight", slice(2 * D, 3 * D)),
        "self_attn.o_proj.weight": ("attn.proj.weight", None),
        "mlp.gate_proj.weight": ("mlp.up.weight", slice(0, HIDDEN)),
        "mlp.up_proj.weight": ("mlp.up.weight", slice(HIDDEN, 2 * HIDDEN)),
        "mlp.down_proj.weight": ("mlp.down.weight", None),
    }
    if kind in ("llama", "qwen3"):
        mapping |= {"input_layernorm.weight": ("norm1.scale", None),
                    "post_attention_layernorm.weight": ("norm2.scale", None)}
    if kind in ("qwen3", "olmo2"):
        mapping |= {"self_attn.q_norm.weight": ("attn.q_norm.scale", None),
                    "self_attn.k_norm.weight": ("attn.k_norm.scale", None)}
    if kind == "olmo2":
        mapping |= {"post_attention_layernorm.weight": ("attn_out_norm.scale", None),
                    "post_feedforward_layernorm.weight": ("mlp_out_norm.scale", None)}
    return mapping


def ours_from(kind: str, preset: str, reference: list[torch.nn.Module]) -> list[torch.nn.Module]:
    variant = get_variant(preset)
    blocks = [variant.build_block(CONFIG, index) for index in range(LAYERS)]
    mapping = weight_map(kind)
    for block, layer in zip(blocks, reference):
        ours = dict(block.named_parameters())
        theirs = dict(layer.named_parameters())
        assert set(theirs) == set(mapping), "every reference parameter is mapped"
        covered = {name: 0 for name in ours}
        with torch.no_grad():
            for their_name, (our_name, rows) in mapping.items():
                target = ours[our_name] if rows is None else ours[our_name][rows]
                target.copy_(theirs[their_name])
                covered[our_name] += theirs[their_name].numel()
        assert covered == {name: p.numel() for name, p in ours.items()}, "every blockbench parameter is filled"
    return blocks


def assert_near(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    assert ours.shape == theirs.shape, what
    scale = float(theirs.abs().max())
    worst = float((ours - theirs).abs().max())
    assert worst <= TOL * scale, f"{what}: max difference {worst:.3g} against a scale of {scale:.3g}"


def run_both(kind: str, preset: str) -> None:
    reference, rotary = reference_layers(kind)
    ours = ours_from(kind, preset, reference)
    torch.manual_seed(2)
    x = torch.randn(2, T, D)
    weights = torch.randn(2, T, D)
    positions = torch.arange(T).unsqueeze(0)

    x_ref = x.clone().requires_grad_(True)
    h = x_ref
    cos_sin = rotary(h, positions)
    for layer in reference:
        out = layer(h, attention_mask=None, position_ids=positions, position_embeddings=cos_sin)
        h = out[0] if isinstance(out, tuple) else out
    (h * weights).sum().backward()

    x_ours = x.clone().requires_grad_(True)
    g = x_ours
    for block in ours:
        g = block(g)
    (g * weights).sum().backward()

    assert_near(g, h, "output")
    assert_near(x_ours.grad, x_ref.grad, "input gradient")
    for block, layer in zip(ours, reference):
        ours_params = dict(block.named_parameters())
        for their_name, (our_name, rows) in weight_map(kind).items():
            grad = ours_params[our_name].grad
            grad = grad if rows is None else grad[rows]
            assert_near(grad, dict(layer.named_parameters())[their_name].grad, f"gradient of {their_name}")


def test_transformer_pp_is_llama_decoder_layer() -> None:
    run_both("llama", "transformer_pp")


def test_transformer_pp_qknorm_is_qwen3_decoder_layer() -> None:
    run_both("qwen3", "transformer_pp_qknorm")


def test_olmo2_is_olmo2_decoder_layer() -> None:
    run_both("olmo2", "olmo2")


def test_parameter_counts_match_the_references() -> None:
    """modern-blocks.md: at d=128, 4 heads, intermediate 384, LLaMA's layer has 213,248 parameters, OLMo 2's 213,504."""
    for kind, preset, expected in (("llama", "transformer_pp", 213_248), ("olmo2", "olmo2", 213_504)):
        reference, _ = reference_layers(kind)
        assert sum(p.numel() for p in reference[0].parameters()) == expected
        block = get_variant(preset).build_block(CONFIG, 0)
        assert sum(p.numel() for p in block.parameters()) == expected


def test_rope_matches_transformers_half_split_layout() -> None:
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    head_dim = D // HEADS
    rotary = LlamaRotaryEmbedding(reference_config("llama"))
    cos_ref, sin_ref = rotary(torch.zeros(1, T, D), torch.arange(T).unsqueeze(0))
    cos, sin = rope_tables(T, head_dim)
    torch.testing.assert_close(cos, cos_ref[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(sin, sin_ref[0], atol=1e-6, rtol=1e-6)
    torch.manual_seed(3)
    q, k = torch.randn(2, HEADS, T, head_dim), torch.randn(2, HEADS, T, head_dim)
    q_ref, k_ref = apply_rotary_pos_emb(q, k, cos_ref, sin_ref)
    torch.testing.assert_close(apply_rope(q, cos, sin), q_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(apply_rope(k, cos, sin), k_ref, atol=1e-6, rtol=1e-6)


def interleaved_rope(x: torch.Tensor, theta: float = 10_000.0) -> torch.Tensor:
    """RoPE in the original paper's layout (neighbours 2i, 2i+1 rotate together): the layout blockbench must not use."""
    seq, dim = x.shape[-2], x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2).float() / dim)
    angles = torch.outer(torch.arange(seq).float(), inv_freq)
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], dim // 2, 2).contiguous())
    return torch.view_as_real(pairs * torch.polar(torch.ones_like(angles), angles)).flatten(-2)


def test_wrong_rope_layout_fails_the_reference() -> None:
    """The reference comparison can tell the layouts apart: with interleaved RoPE the LLaMA layer is not matched."""
    import blockbench.blocks.rope as rope

    original = rope.Rotary.rotate
    try:
        rope.Rotary.rotate = lambda self, x, tokens_dim=-2: (
            interleaved_rope(x) if tokens_dim == -2 else interleaved_rope(x.transpose(-3, -2)).transpose(-3, -2))
        with pytest.raises(AssertionError):
            run_both("llama", "transformer_pp")
    finally:
        rope.Rotary.rotate = original
    run_both("llama", "transformer_pp")
