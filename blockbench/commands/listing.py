"""`blockbench list`: the block zoo, every registered variant's parameters and FLOPs at one model shape.
(Named listing, not list: a module called list would shadow the builtin wherever it is imported by name.)"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from blockbench.blocks import variants
from blockbench.commands import common
from blockbench.commands.show import add_model_args, describe_variant, model_config_from_args
from blockbench.untrusted import plain

COLUMNS = (("variant", "left"), ("description", "left"), ("params", "right"), ("block matrices", "right"),
           ("fwd FLOPs/token", "right"))


def cmd_list(args: argparse.Namespace) -> int:
    config = model_config_from_args(args)
    rows = [describe_variant(v.name, config, {}, use_fvcore=False) for v in variants()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"blockbench variants at L={config.n_layers} d={config.d_model} H={config.n_heads} "
                        f"T={config.seq_len} V={config.vocab_size}")
    for column, justify in COLUMNS:
        table.add_column(column, justify=justify)
    for row in rows:
        # A user block's name and docstring are its author's text: rich Text (never parsed as markup), one line.
        table.add_row(Text(plain(row["variant"])), Text(plain(row["description"])), f"{row['params_total']:,}",
                      f"{row['params_block_matrices']:,}", f"{row['flops_fwd_per_token']:,}")
    Console().print(table)
    return 0


def add_parser(sub: Any) -> None:
    p = common.add_command(sub, "list", cmd_list,
                           help="the block zoo: parameters and FLOPs of every variant",
                           description="Every registered variant (the presets and any --block) built at one model "
                                       "shape: total and block-matrix parameters and forward FLOPs per token. No "
                                       "training and no data.")
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
