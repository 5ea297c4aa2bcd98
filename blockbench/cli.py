"""`blockbench` command line: list | show | run | leaderboard | compare."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

from blockbench.cli_args import add_run_shape_args, failed_exit, parse_value, split_list
from blockbench.errors import BlockbenchError, Terminated
from blockbench.untrusted import plain


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage dump: the message and where to look.
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BlockbenchError(f"--set {item!r}: expected FIELD=VALUE")
        overrides[key.strip()] = parse_value(value.strip())
    return overrides


def model_config_from_args(args: argparse.Namespace, base: Any = None):
    from blockbench.model import ModelConfig

    base = base or ModelConfig()
    fields = {"n_layers": args.layers, "d_model": args.width, "n_heads": args.heads,
              "vocab_size": args.vocab, "seq_len": args.seq_len, "workload": getattr(args, "workload", None)}
    return ModelConfig(**{**base.to_dict(), **{k: v for k, v in fields.items() if v is not None}})


def describe_variant(name: str, config: Any, overrides: dict[str, Any], use_fvcore: bool) -> dict[str, Any]:
    """Static measures of one variant: what `show` prints and `list` tabulates."""
    from blockbench.blocks import get_variant
    from blockbench.measure.flops import count_flops
    from blockbench.measure.params import count_params
    from blockbench.model import build_model

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


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from blockbench.blocks import variants

    config = model_config_from_args(args)
    rows = [describe_variant(v.name, config, {}, use_fvcore=False) for v in variants()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"blockbench variants at L={config.n_layers} d={config.d_model} H={config.n_heads} "
                        f"T={config.seq_len} V={config.vocab_size}")
    for column, justify in (("variant", "left"), ("description", "left"), ("params", "right"),
                            ("block matrices", "right"), ("fwd FLOPs/token", "right")):
        table.add_column(column, justify=justify)
    for row in rows:
        # A user block's name and docstring are its author's text: rich Text (never parsed as markup), one line.
        table.add_row(Text(plain(row["variant"])), Text(plain(row["description"])), f"{row['params_total']:,}",
                      f"{row['params_block_matrices']:,}", f"{row['flops_fwd_per_token']:,}")
    Console().print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.set)
    if args.crammed_bert:
        from blockbench.blocks.zoo import crammed_bert

        overrides = {**crammed_bert(args.variant), **overrides}
    info = describe_variant(args.variant, model_config_from_args(args), overrides, use_fvcore=True)
    from blockbench.diagnose import init_loss_note

    info["init_loss_note"] = init_loss_note(info["block_spec"], info["config"]["d_model"],
                                            info["config"]["vocab_size"])
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # A user block's docstring (description, notes) is its author's text: rich Text, never parsed as markup.
    table = Table(title=Text(plain(f"{info['variant']}: {info['description']}")), show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key in ("notes", "positions", "mlp", "config", "params_total", "params_embedding", "params_block_matrices",
                "params_per_block", "flops_fwd_per_token", "flops_train_per_token", "flops_convention"):
        value = info[key]
        if value is not None:
            table.add_row(key, f"{value:,}" if isinstance(value, int) else Text(plain(value)))
    counters = info["counters"]
    table.add_row("FLOP cross-check", f"FlopCounterMode {counters['flopcounter_fwd']:,} | fvcore x2 "
                  f"{counters['fvcore_fwd_x2']:,} | analytic {counters['analytic_fwd']}")
    if info["block_spec"]:
        table.add_row("block_spec", Text(json.dumps(info["block_spec"])))
    from blockbench.diagnose import init_loss_note

    note = init_loss_note(info["block_spec"], info["config"]["d_model"], info["config"]["vocab_size"])
    if note:  # the loss a user first sees is far above ln V: say why, at the shape shown
        table.add_row("at init", Text(plain(note)))
    Console().print(table)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from blockbench import distributed
    from blockbench.executors import check_executor_args, executor_from_args
    from blockbench.progress import RunDisplay
    from blockbench.runner import default_out_dir, isolate_default, run
    from blockbench.suite import load_suite

    suite = load_suite(args.suite)
    budget = {kind: value for kind, value in (("steps", args.budget_steps), ("tokens", args.budget_tokens),
                                              ("seconds", args.budget_seconds), ("flops", args.budget_flops))
              if value is not None}
    suite = suite.with_overrides(budget=budget or None, target_loss=args.target_loss,
                                 variants=split_list(args.variants, "--variants"),
                                 seeds=split_list(args.seeds, "--seeds", int), device=args.device,
                                 threads=args.threads, speed_rounds=args.speed_rounds)
    if args.overrides:
        suite = suite.with_override_file(args.overrides)
    dist = distributed.from_env()
    if dist.enabled and not args.out:
        raise BlockbenchError("under torchrun, give --out (every rank must write to the same directory)")
    if args.resume and not args.out:
        raise BlockbenchError("--resume needs --out DIR: the directory of the interrupted run")
    out = Path(args.out) if args.out else default_out_dir(suite)
    in_process = args.in_process or not isolate_default()
    check_executor_args(args, in_process, dist)
    if suite.ladder is not None and dist.enabled:
        raise BlockbenchError(f"{suite.name} is a ladder: run it with the local or Ray executor, not under torchrun")
    display = RunDisplay(suite, quiet=args.quiet or not dist.is_main, silent=not dist.is_main)
    try:
        with display:
            if suite.ladder is not None:
                result = _run_ladder(suite, out, args, in_process, display)
            else:
                result = run(suite, out, make_executor=lambda: executor_from_args(args, in_process, dist),
                             block_paths=args.block, on_event=display.event, dist=dist, resume=args.resume,
                             max_retries=args.max_retries)
    except KeyboardInterrupt as exc:
        display.summary(str(out))
        code, what = (143, "terminated") if isinstance(exc, Terminated) else (130, "interrupted")
        print(f"blockbench: {what}; {len(display.records)} finished record(s) kept in {out}/records "
              f"(--resume --out {out} finishes the suite)", file=sys.stderr)
        return code
    display.summary(str(out))
    distributed.shutdown(dist)
    return failed_exit(result, out)


def _run_ladder(suite: Any, out: Any, args: argparse.Namespace, in_process: bool, display: Any) -> Any:
    """Every rung of a ladder suite into OUT/RUNG/ through one executor (runner.run_ladder)."""
    from blockbench.executors import executor_from_args
    from blockbench.runner import run_ladder

    executor = executor_from_args(args, in_process)
    try:
        return run_ladder(suite, out, executor=executor, block_paths=args.block, on_event=display.event,
                          resume=args.resume, max_retries=args.max_retries)
    finally:
        executor.close()


def add_shape_args(parser: argparse.ArgumentParser) -> None:
    from blockbench.model import ModelConfig

    base = ModelConfig()  # what model_config_from_args starts from: the help names its values
    parser.add_argument("--layers", type=int, help=f"number of blocks L (default {base.n_layers})")
    parser.add_argument("--width", type=int, help=f"model width d (default {base.d_model})")
    parser.add_argument("--heads", type=int, help=f"attention heads H (default {base.n_heads})")
    parser.add_argument("--vocab", type=int, help=f"vocabulary size V (default {base.vocab_size})")
    parser.add_argument("--seq-len", type=int, help=f"sequence length T (default {base.seq_len})")
    from blockbench.workloads import workload_help, workload_names

    parser.add_argument("--workload", choices=workload_names(),
                        help=f"the model as this workload builds it: {workload_help()}")


def build_parser() -> argparse.ArgumentParser:
    from blockbench.suite import THREADS_HELP, suite_help

    parser = _Parser(prog="blockbench", description="Benchmark transformer block designs under identical training.")
    parser.add_argument("--block", action="append", metavar="[NAME=]module.path:factory",
                        help="register a user block (a BlockSpec or a factory(config, layer_index)); repeatable "
                             "(default: none, the presets only)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="the block zoo: parameters and FLOPs of every variant",
                       description="Every registered variant (the presets and any --block) built at one model "
                                   "shape: total and block-matrix parameters and forward FLOPs per token. No "
                                   "training and no data.")
    add_shape_args(p)
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="one variant in detail: spec, parameter counts, FLOP cross-check",
                       description="One variant built at one model shape: its BlockSpec, parameter counts, and "
                                   "FLOPs per token from three counters (FlopCounterMode, fvcore, the analytic "
                                   "formula) side by side.")
    p.add_argument("variant", help="a preset name (see `blockbench list`) or a --block NAME")
    add_shape_args(p)
    p.add_argument("--mlp-ratio", type=float,
                   help="MLP hidden width / d (overrides the spec's mlp_ratio; default: the spec's)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override a BlockSpec field; repeatable (default: none)")
    p.add_argument("--crammed-bert", action="store_true",
                   help="Crammed BERT's block conventions (LayerNorm eps 1e-12, GEGLU MLP, beta_FF 0.05 where it "
                        "trains), before any --set; with a bidirectional --workload, the paper's BERT blocks")
    p.add_argument("--json", action="store_true", help="print everything as JSON instead of a table")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("run", help="train every variant of a suite under its budget and write run records",
                       description="Train every (variant, seed) of a suite under identical conditions for a fixed "
                                   "budget, one fresh process per run, and write one record per run to "
                                   "OUT/records/. Exit 0 ok, 2 unusable input, 3 some runs failed, 130/143 "
                                   "interrupted.")
    p.add_argument("--suite", default="default", help=suite_help())
    p.add_argument("--variants", help="comma-separated variants (default: the suite's)")
    p.add_argument("--seeds", help="comma-separated seeds (default: the suite's)")
    add_run_shape_args(p)
    p.add_argument("--target-loss", type=float, metavar="X",
                   help="eval loss (nats/token) for the to-target metrics (default: the suite's eval.target_loss)")
    p.add_argument("--speed-rounds", type=int, metavar="N",
                   help="the interleaved probe's minimum of rounds before training: 0 (no probe) or at least 3; it "
                        "goes on until its intervals are tight or its time cap (default: the suite's [speed] rounds)")
    p.add_argument("--overrides", metavar="FILE",
                   help="a suite-override file, e.g. the sweep.toml that `blockbench sweep` writes (default: none)")
    p.add_argument("--out", help="output directory (default: runs/SUITE/VERSION/TIMESTAMP)")
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.add_argument("--quiet", action="store_true", help="plain log lines instead of progress bars")
    p.add_argument("--in-process", action="store_true", help="run every variant in this process (no isolation)")
    from blockbench.executors import add_executor_args

    add_executor_args(p)
    p.set_defaults(func=cmd_run)
    # Subcommands defined next to their implementation register here (each module's add_parser(sub)).
    from blockbench import diagnose, profile, sweep
    from blockbench.views import compare, ladder, leaderboard_command, report

    for module in (sweep, leaderboard_command, ladder, compare, report, diagnose, profile):
        module.add_parser(sub)
    return parser


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """Exit codes (a contract, see docs/reliability.md): 0 ok, 1 regression (compare and the gate), 2 unusable
    input or usage error, 3 some runs failed, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."""
    import signal

    args = build_parser().parse_args(argv)
    if getattr(args, "mlp_ratio", None) is not None:
        args.set = [*(args.set or []), f"mlp_ratio={args.mlp_ratio}"]
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (an embedding program): it keeps its own handler
        previous = None
    try:
        from blockbench.blocks.plugins import register_user_blocks

        register_user_blocks(args.block)
        return args.func(args)
    except BlockbenchError as exc:
        if args.debug:
            raise
        # One printable line: a message may quote a file's or a record's text (untrusted.plain drops ESC & co).
        print(f"blockbench: error: {plain(exc)}", file=sys.stderr)
        return 2
    except Terminated:
        print("blockbench: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("blockbench: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - never a traceback (and never exit 1, "regression") by default
        if args.debug:
            raise
        first = plain((str(exc).strip().splitlines() or [""])[0])
        print(f"blockbench: error: unexpected {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
