"""A/A check of the interleaved speed probe (issue 36): how often does the probe call a block that is its own
baseline "no measurable difference"?

Each run is one speed probe exactly as `blockbench run` makes it (train.prepare_variants, in a fresh process like
the executors' probe process, with the suite's threads and [speed] table: its minimum of rounds, target half-width
and time cap), on the suite's variants plus an A/A variant: the baseline's preset under another name, built from
another initialisation draw (what a `--block` plug-in building the same preset is). The probe's own A/A control
runs beside it as always. The target (issue 36): at least 19 of 20 runs say "no measurable difference".

    python benchmarks/scripts/aa_probe.py --runs 20                                    # smoke: pre_ln at L=2, d=64
    python benchmarks/scripts/aa_probe.py --runs 20 --suite default --baseline pre_ln  # the issue's setting
    python benchmarks/scripts/aa_probe.py --runs 2 --variants pre_ln --json out.json   # a quick check of the script

Prints one line per run (the A/A variant's words, the floor, rounds and why the probe stopped) and the count;
exit 0 when the share of "no measurable difference" reaches --target (0.95), else 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def aa_suite(suite_name: str, baseline: str | None, variants: list[str] | None):
    """The suite with its baseline (optionally another of its variants) and an A/A twin of it, `<baseline>_aa`."""
    from blockbench.step_probe import suite_at_shape
    from blockbench.suite import load_suite

    suite = load_suite(suite_name)
    if baseline:
        suite = dataclasses.replace(suite_at_shape(suite, sorted({*suite.variants, baseline})), baseline=baseline)
    names = variants or list(suite.variants)
    if suite.baseline not in names:
        names = [suite.baseline, *names]
    suite = suite_at_shape(suite, names)
    twin = f"{suite.baseline}_aa"
    entry = dataclasses.replace(suite.variants[suite.baseline], name=twin)
    return dataclasses.replace(suite, variants={**suite.variants, twin: entry}), twin


def one_probe(args: argparse.Namespace) -> dict:
    """One probe in this process: the twin's words and the probe's facts."""
    from blockbench import stats
    from blockbench.executors.worker import _worker_setup
    from blockbench.train import prepare_variants

    suite, twin = aa_suite(args.suite, args.baseline, args.variants)
    data = _worker_setup(suite, [], str(REPO))
    start = time.perf_counter()
    prepared = prepare_variants(suite, data)
    seconds = time.perf_counter() - start
    speed = prepared[twin]["speed"]
    verdict = stats.speed_verdict(speed)
    return {"kind": verdict.kind, "words": verdict.text, "floor": stats.floor_words(speed),
            "rounds": speed["rounds"], "stop_reason": speed["stop_reason"], "probe_seconds": seconds,
            "ratio": speed["speedup_vs_baseline"], "ci": [speed["ci_low"], speed["ci_high"]],
            "control": speed["control"], "variants": list(suite.variants)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="probes to make, each in its own process (default 20)")
    parser.add_argument("--suite", default="smoke", help="suite name or .toml (default smoke: pre_ln, L=2, d=64)")
    parser.add_argument("--baseline", help="the variant to copy (default: the suite's baseline)")
    parser.add_argument("--variants", type=lambda s: s.split(","), metavar="A,B",
                        help="the suite's variants to probe beside the twin (default: all of them)")
    parser.add_argument("--target", type=float, default=0.95, help="share of runs that must say no difference")
    parser.add_argument("--json", metavar="PATH", help="also write every run's result here")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: one probe, JSON out
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_probe(args)))
        return 0
    child = [sys.executable, __file__, "--one", "--suite", args.suite]
    child += ["--baseline", args.baseline] if args.baseline else []
    child += ["--variants", ",".join(args.variants)] if args.variants else []
    results = []
    for i in range(args.runs):
        done = subprocess.run(child, capture_output=True, text=True, cwd=REPO, check=False)
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            return 2
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"run {i + 1}/{args.runs}: {result['words']}; {result['floor']}; {result['rounds']} rounds, "
              f"stopped: {result['stop_reason']} ({result['probe_seconds']:.1f} s)", flush=True)
    quiet = sum(r["kind"] == "no difference" for r in results)
    print(f"A/A: {quiet}/{len(results)} probes said no measurable difference (target >= {args.target:.0%}; "
          f"variants {', '.join(results[0]['variants'])})" if results else "no run")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0 if results and quiet >= args.target * len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
