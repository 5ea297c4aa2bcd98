"""`blockbench diagnose [VARIANT]`: signal propagation at initialisation (diagnose.py), written and summarised."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from blockbench.blocks import PRESETS, get_variant
from blockbench.blocks.spec import SpecError
from blockbench.commands import common
from blockbench.diagnose import diagnose, init_loss_note, replot, write_diagnosis
from blockbench.workloads import workload_names


def _init_note(name: str, result: dict[str, Any]) -> str | None:
    try:
        spec = get_variant(name).spec
    except SpecError:
        return None
    return init_loss_note(spec.to_dict() if spec else None, result["model"]["d_model"], result["vocab_size"])


def cmd_diagnose(args: argparse.Namespace) -> int:
    if args.replot:
        print(f"wrote {replot(Path(args.out))}")
        return 0
    if args.variant == "presets":
        variants: list[str] | None = [v.name for v in PRESETS]
    else:
        variants = None if args.variant == "all" else [args.variant]
    result = diagnose(variants, args.suite, args.layers, workload=args.workload)
    out = Path(args.out)
    write_diagnosis(result, out)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    for name, values in result["variants"].items():
        print(f"{name:16s} cosine at last layer {values['cosine'][-1]:.3f}   RMS {values['rms_norm'][-1]:.3f}")
    notes = {name: note for name in result["variants"] if (note := _init_note(name, result)) is not None}
    if notes:  # the first thing a user of the SAS family sees is a loss above ln V: say why once
        print(f"{', '.join(notes)}: {next(iter(notes.values()))}")
    print(f"wrote {out / 'diagnose.json'} and {out / 'diagnose.png'}")
    return 0


def add_parser(sub: Any) -> None:
    p = common.add_command(sub, "diagnose", cmd_diagnose,
                           help="signal propagation at init: token cosine similarity and norm per layer",
                           description="Build each variant at initialisation on real batches of the suite's data and "
                                       "measure, after every block, how alike different tokens' representations are "
                                       "(mean cosine similarity; near 1 is rank collapse) and the RMS activation. "
                                       "Writes diagnose.json and diagnose.png; no training.")
    p.add_argument("variant", nargs="?", default="all",
                   help="one variant, 'all' (default: the suite's variants) or 'presets' (every built-in preset)")
    common.add_suite_arg(p, "; the model's shape and the data come from it")
    p.add_argument("--layers", type=int, help="depth to diagnose (default: the suite's n_layers)")
    p.add_argument("--workload", choices=workload_names(),
                   help="build the models for this workload (default: the suite's): its attention mask and head")
    p.add_argument("--out", default="diagnose",
                   help="directory for diagnose.json and diagnose.png (default: %(default)s)")
    p.add_argument("--replot", action="store_true",
                   help="redraw --out's diagnose.png from its diagnose.json, building no model; with run records "
                        "in --out, only the variants they cover")
    p.add_argument("--json", action="store_true",
                   help="print the result as JSON instead of a summary (the files are written either way)")
