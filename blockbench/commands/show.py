"""`blockbench show VARIANT`: one variant built at one model shape, its spec, parameter counts and FLOPs from three
counters; and what `list` shares with it (the model's shape flags, a variant's static measures)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from blockbench.blocks import get_variant
from blockbench.blocks.zoo import crammed_bert
from blockbench.cli_args import parse_value
from blockbench.commands import common
from blockbench.diagnose import init_loss_note
from blockbench.errors import BlockbenchError
from blockbench.measure.flops import count_flops
from blockbench.measure.params import count_params
from blockbench.model import ModelConfig, build_model
from blockbench.untrusted import plain
from blockbench.workloads import workload_help, workload_names

SHOWN = ("notes", "positions", "mlp", "config", "params_total", "params_embedding", "params_block_matrices",
         "params_per_block", "flops_fwd_per_token", "flops_train_per_token", "flops_convention")


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BlockbenchError(f"--set {item!r}: expected FIELD=VALUE")
        overrides[key.strip()] = parse_value(value.strip())
    return overrides


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The shape flags with ModelConfig's defaults (what model_config_from_args starts from), and --workload."""
    base = ModelConfig()
    common.add_shape_args(parser, lambda field: f"default {getattr(base, field)}")
    parser.add_argument("--workload", choices=workload_names(),
                        help=f"the model as this workload builds it: {workload_help()}")


def model_config_from_args(args: argparse.Namespace, base: Any = None) -> ModelConfig:
    base = base or ModelConfig()
    fields = {"n_layers": args.layers, "d_model": args.width, "n_heads": args.heads,
              "vocab_size": args.vocab, "seq_len": args.seq_len, "workload": getattr(args, "workload", None)}
    return ModelConfig(**{**base.to_dict(), **{k: v for k, v in fields.items() if v is not None}})


def describe_variant(name: str, config: Any, overrides: dict[str, Any], use_fvcore: bool) -> dict[str, Any]:
    """Static measures of one variant: what `show` prints and `list` tabulates."""
    variant = get_variant(name)
    spec = variant.spec.replace(**overrides) if overrides and variant.spec else None
    if overrides and variant.spec is None:
        raise BlockbenchError(f"variant {name!r} is a user factory block; --set does not apply to it")
    model = build_model(variant, config, spec)
    return {
        "variant": name,
        "description": variant.description,
        "notes": variant.notes,
        "config": config.to_dict(),
        "block_spec": model.spec.to_dict() if model.spec else None,
        "positions": position_words(model),
        "mlp": model.spec.mlp_rule(config.d_model) if model.spec else None,
        **count_params(model),
        **count_flops(model, use_fvcore=use_fvcore),
    }


def position_words(model: Any) -> str:
    """How the variant knows positions, in words: what `show` prints and records carry in block_spec.positions."""
    if model.positions == "learned":
        return f"learned: an absolute embedding of {model.pos_emb.weight.numel():,} parameters added to the input"
    if model.positions == "none":
        return "none (NoPE): no position embedding; only the causal mask orders tokens"
    spec = model.spec
    theta = f", theta {spec.rope_theta:g}" if spec is not None else ""
    return (f"rope: rotary embeddings on every attention's queries and keys{theta}, half-split layout (transformers' "
            "rotate_half); no position-embedding parameters")


def cmd_show(args: argparse.Namespace) -> int:
    if args.mlp_ratio is not None:
        args.set = [*(args.set or []), f"mlp_ratio={args.mlp_ratio}"]
    overrides = parse_overrides(args.set)
    if args.crammed_bert:
        overrides = {**crammed_bert(args.variant), **overrides}
    info = describe_variant(args.variant, model_config_from_args(args), overrides, use_fvcore=True)
    info["init_loss_note"] = init_loss_note(info["block_spec"], info["config"]["d_model"],
                                            info["config"]["vocab_size"])
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    # A user block's docstring (description, notes) is its author's text: rich Text, never parsed as markup.
    table = Table(title=Text(plain(f"{info['variant']}: {info['description']}")), show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key in SHOWN:
        value = info[key]
        if value is not None:
            table.add_row(key, f"{value:,}" if isinstance(value, int) else Text(plain(value)))
    counters = info["counters"]
    table.add_row("FLOP cross-check", f"FlopCounterMode {counters['flopcounter_fwd']:,} | fvcore x2 "
                  f"{counters['fvcore_fwd_x2']:,} | analytic {counters['analytic_fwd']}")
    if info["block_spec"]:
        table.add_row("block_spec", Text(json.dumps(info["block_spec"])))
    if info["init_loss_note"]:  # the loss a user first sees is far above ln V: say why, at the shape shown
        table.add_row("at init", Text(plain(info["init_loss_note"])))
    Console().print(table)
    return 0


def add_parser(sub: Any) -> None:
    p = common.add_command(sub, "show", cmd_show,
                           help="one variant in detail: spec, parameter counts, FLOP cross-check",
                           description="One variant built at one model shape: its BlockSpec, parameter counts, and "
                                       "FLOPs per token from three counters (FlopCounterMode, fvcore, the analytic "
                                       "formula) side by side.")
    p.add_argument("variant", help="a preset name (see `blockbench list`) or a --block NAME")
    add_model_args(p)
    p.add_argument("--mlp-ratio", type=float,
                   help="MLP hidden width / d (overrides the spec's mlp_ratio; default: the spec's)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override a BlockSpec field; repeatable (default: none)")
    p.add_argument("--crammed-bert", action="store_true",
                   help="Crammed BERT's block conventions (LayerNorm eps 1e-12, GEGLU MLP, beta_FF 0.05 where it "
                        "trains), before any --set; with a bidirectional --workload, the paper's BERT blocks")
    p.add_argument("--json", action="store_true", help="print everything as JSON instead of a table")
