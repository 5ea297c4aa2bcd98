"""The sweep behind `blockbench sweep` (its arguments: commands/sweep.py): tune optimiser or block-spec fields per
variant on a grid, and record the choice.

Every grid point is an ordinary suite run (its own records directory, `fields` listed in the records'
overrides), so sweep records can be inspected, ranked and compared like any other. The choice per variant is the
grid point with the lowest final eval loss, averaged over the sweep's seeds (a diverged, unevaluated or plateaued
run counts as +inf: not converged), by the choice rule named in the file (RULES; default `safer-neighbour`: a best
point one grid step from a point that did not converge gives way to its best converged neighbour away from the
failure, unless >= 2 seeds at the best point each beat that neighbour). It is written as a suite-override file,
`sweep.toml`, that
`blockbench run --overrides` applies and whose `[provenance]` table says which suite, budget, seeds, grid and
records it came from.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from blockbench import stats
from blockbench.cli_args import parse_value
from blockbench.errors import BlockbenchError
from blockbench.executors import default_executor
from blockbench.measure.env import git_state
from blockbench.records import load_records, tokenization_difference
from blockbench.runner import OutLock, execute, plan_run
from blockbench.safeio import atomic_write_text, check_writable_target
from blockbench.suite import SPEC_FIELDS, Suite

METRIC = ("summary.final_eval_loss, mean over seeds (a diverged, unevaluated or plateaued run counts as +inf: "
          "not converged)")


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """`["lr=1e-3,3e-3", "beta_ff=0.1,0.2"]` -> {"lr": [0.001, 0.003], "beta_ff": [0.1, 0.2]}."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        axis, sep, values = item.partition("=")
        axis = axis.strip()
        if not sep or not axis or not values.strip():
            raise BlockbenchError(f"--grid {item!r}: expected FIELD=V1,V2,... (e.g. lr=3e-4,1e-3,3e-3)")
        if axis in grid:
            raise BlockbenchError(f"--grid: axis {axis!r} given twice")
        parsed = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
        if len(set(map(repr, parsed))) != len(parsed):
            raise BlockbenchError(f"--grid {axis}: repeated value in {values!r}")
        grid[axis] = parsed
    if not grid:
        raise BlockbenchError("give at least one --grid FIELD=V1,V2,...")
    return grid


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def point_label(point: dict[str, Any]) -> str:
    """A grid point as a directory name and table heading: `lr=0.003,beta_ff=0.1`."""
    return ",".join(f"{axis}={value}" for axis, value in point.items()).replace("/", "_")


def score(records: list[dict[str, Any]]) -> float:
    # A run stuck on the unigram plateau ended "ok" but learnt nothing from context: like a diverged one it is
    # not converged, so a grid point cannot win on it (stats.plateau_steps; old records are judged from the curve).
    losses = [r["summary"]["final_eval_loss"] if r["status"] == "ok" and stats.plateau_steps(r) is None else None
              for r in records]
    if not losses or any(loss is None or not math.isfinite(loss) for loss in losses):
        return math.inf
    return sum(losses) / len(losses)


# How a sweep picks a variant's point. One seed at one point is one draw: paper-bert-cpu's sweep (one seed) chose
# lr 1e-2 for SAS-P without norm, one step from a diverged 3e-2, and that choice then diverged on 1 of 3 seeds and
# made a claim look reproduced through instability (issue 23).
RULES = {
    "safer-neighbour": "the lowest mean final eval loss over seeds; when that point is one grid step from a point "
                       "that did not converge (diverged, unevaluated or on the unigram plateau), its best converged "
                       "grid neighbour that touches no such point is taken instead, unless the best point ran >= 2 "
                       "seeds and each of them beat that neighbour's on the same seed",
    "lowest": "the lowest mean final eval loss over seeds (ties: the earlier grid point)",
}
DEFAULT_RULE = "safer-neighbour"


def _neighbours(point: dict[str, Any], axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The grid points one step from `point` along one axis."""
    out = []
    for axis, values in axes.items():
        i = values.index(point[axis])
        out += [{**point, axis: values[j]} for j in (i - 1, i + 1) if 0 <= j < len(values)]
    return out


def _seed_losses(records: list[dict[str, Any]]) -> dict[int, float]:
    return {r["seed"]: r["summary"]["final_eval_loss"] for r in records
            if r["status"] == "ok" and stats.plateau_steps(r) is None and r["summary"]["final_eval_loss"] is not None}


def select(records: list[dict[str, Any]], points: list[dict[str, Any]], rule: str = DEFAULT_RULE
           ) -> dict[str, dict[str, Any]]:
    """Per variant: every point's score and the chosen point by `rule` (RULES); `moved_from` names the lowest
    point when the rule chose another, with `why`."""
    if rule not in RULES:
        raise BlockbenchError(f"unknown choice rule {rule!r} (known: {', '.join(RULES)})")
    axes: dict[str, list[Any]] = {}
    for point in points:
        for axis, value in point.items():
            if value not in axes.setdefault(axis, []):
                axes[axis].append(value)
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        fields = record["config"]["overrides"].get("fields", {})
        for point in points:  # records store fields with sorted keys: match by value, label in grid order
            if all(fields.get(axis) == value for axis, value in point.items()):
                by_key.setdefault((record["variant"], point_label(point)), []).append(record)
    variants = list(dict.fromkeys(r["variant"] for r in records))
    choice = {}
    for variant in variants:
        scores = {point_label(p): score(by_key.get((variant, point_label(p)), [])) for p in points}
        best = min(points, key=lambda p: scores[point_label(p)])
        choice[variant] = {"best": best, "scores": scores, "resolved": math.isfinite(scores[point_label(best)])}
        if rule != "safer-neighbour" or not choice[variant]["resolved"]:
            continue

        def finite(point: dict[str, Any], scores: dict[str, float] = scores) -> bool:
            return math.isfinite(scores.get(point_label(point), math.inf))

        failing = [n for n in _neighbours(best, axes) if not finite(n)]
        if not failing:
            continue
        safe = [n for n in _neighbours(best, axes)
                if finite(n) and all(finite(m) for m in _neighbours(n, axes))]
        if not safe:
            continue  # nothing safer on the grid: next_to_failure's note says so
        safer = min(safe, key=lambda p: scores[point_label(p)])
        mine = _seed_losses(by_key.get((variant, point_label(best)), []))
        theirs = _seed_losses(by_key.get((variant, point_label(safer)), []))
        common = set(mine) & set(theirs)
        if len(common) >= 2 and all(mine[s] < theirs[s] for s in common):
            continue  # not one lucky seed: every seed at the best point beat the safer one
        choice[variant].update(best=safer, moved_from=point_label(best),
                               why=f"{point_label(best)} is one grid step from {point_label(failing[0])}, which did "
                                   "not converge")
    return choice


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf") if value == value else "nan"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise BlockbenchError(f"cannot write {value!r} to TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def next_to_failure(choice: dict[str, dict[str, Any]], grid: dict[str, list[Any]]) -> dict[str, str]:
    """Per variant whose chosen point has a grid neighbour (one step along one axis) that did not converge: that
    neighbour's label. A learning rate one step from divergence on the sweep's seeds may diverge on others."""
    out = {}
    for variant, c in choice.items():
        if not c["resolved"]:
            continue
        for axis, values in grid.items():
            i = values.index(c["best"][axis])
            for j in (i - 1, i + 1):
                if 0 <= j < len(values):
                    label = point_label({**c["best"], axis: values[j]})
                    if not math.isfinite(c["scores"].get(label, 0.0)):
                        out.setdefault(variant, label)
    return out


def override_file_text(choice: dict[str, dict[str, Any]], provenance: dict[str, Any]) -> str:
    """The suite-override file: provenance first, then one `[variants.NAME]` table per variant."""
    lines = ["# Written by `blockbench sweep`; apply with `blockbench run --suite SUITE --overrides THIS_FILE`.",
             "[provenance]"]
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in provenance.items()]
    lines.append("")
    lines.append("[provenance.scores]  # per variant, per grid point: " + METRIC)
    lines += [f"{_toml_key(v)} = {_toml_value(c['scores'])}" for v, c in choice.items()]
    for variant, c in choice.items():
        lines += ["", f"[variants.{_toml_key(variant)}]"]
        optim = {k: v for k, v in c["best"].items() if k not in SPEC_FIELDS}
        spec = {k: c["spec"][k] for k in c["best"] if k in SPEC_FIELDS}  # gains as {init, trainable}
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in optim.items()]
        if spec:
            lines.append(f"spec = {_toml_value(spec)}")
        if c.get("moved_from"):
            lines.append(f"# the safer neighbour of {c['moved_from']}: {c['why']}")
        if not c["resolved"]:
            lines.append("# every grid point diverged, plateaued or went unevaluated: this choice is not a "
                         "measurement")
    return "\n".join(lines) + "\n"


def run_sweep(suite: Suite, grid: dict[str, list[Any]], out: Path, *, isolate: bool = True,
              block_paths: list[str] | None = None, on_event: Any = None, command: str = "",
              executor: Any = None, resume: bool = False, max_retries: int = 1, rule: str = DEFAULT_RULE
              ) -> tuple[dict[str, dict[str, Any]], Path, Any]:
    """Run every grid point as a suite run under `out/POINT/`, then write `out/sweep.toml`.

    All points' runs go to the executor at once (with Ray they spread over the cluster together). With `resume`,
    runs that already have a record of the same suite content and grid point are reused (an interrupted or a
    widened sweep), and an earlier sweep.toml there is kept as sweep.N.toml; without it, a directory that holds a
    sweep's runs is refused.
    """
    points = grid_points(grid)
    if rule not in RULES:
        raise BlockbenchError(f"--choice {rule!r}: not a choice rule (known: {', '.join(RULES)})")
    # Validate every point before any training, so a bad axis or value fails in one line, early.
    suites = [(point, suite.with_overrides(fields=point)) for point in points]
    target = out / "sweep.toml"
    if target.exists() and not resume:
        raise BlockbenchError(f"--out {out}: already holds sweep.toml (never overwritten; --resume widens the sweep "
                              "there and keeps the old choice beside the new, or choose another --out)")
    if not resume and out.is_dir() and any(p.name != ".lock" for p in out.iterdir()):
        raise BlockbenchError(f"--out {out}: already holds a sweep's runs; --resume finishes or widens it there, "
                              "or choose another --out")
    result = _run_points(suites, out, isolate=isolate, block_paths=block_paths, on_event=on_event,
                         executor=executor, resume=resume, max_retries=max_retries)
    if result.failures:  # a failed run is not a measurement: no choice until --resume has rerun it
        return {}, target, result
    # Only the variants this sweep runs: a widened sweep narrowed with --variants reuses points that also hold
    # other variants' records, whose choice stays in the earlier sweep.N.toml.
    records = [r for r in _point_records(out, points) if r["variant"] in suite.variants]
    choice = select(records, points, rule)
    for variant, c in choice.items():
        c["spec"] = suite.with_overrides(fields=c["best"]).variants[variant].spec
    _write_choice(out, override_file_text(choice, _provenance(suite, grid, points, rule, command)))
    return choice, target, result


def _run_points(suites: list[tuple[dict[str, Any], Suite]], out: Path, *, isolate: bool,
                block_paths: list[str] | None, on_event: Any, executor: Any, resume: bool, max_retries: int) -> Any:
    """Every grid point's suite run under out/POINT/, all through one executor (the runner's RunResult)."""
    with OutLock(out):
        plans = [plan_run(point_suite, out / point_label(point), resume=resume, must_exist=False,
                          label=point_label(point)) for point, point_suite in suites]
        if on_event:
            for plan in plans:
                on_event("point", {"point": plan.label, "skipped": not plan.todo})
        owned = executor is None
        executor = executor or default_executor(not isolate)
        try:
            return execute(plans, executor, block_paths=block_paths, on_event=on_event, max_retries=max_retries)
        finally:
            if owned:
                executor.close()


def _point_records(out: Path, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every grid point's records, which must all have been tokenized alike."""
    records = [r for point in points for r in load_records(out / point_label(point) / "records")]
    for record in records[1:]:  # reused points may come from an earlier session, on another machine
        differ = tokenization_difference(records[0], record)
        if differ:
            raise BlockbenchError(f"--out {out}: its grid points were tokenized differently ({differ}); their "
                                  "losses do not compare (choose another --out)")
    return records


def _provenance(suite: Suite, grid: dict[str, list[Any]], points: list[dict[str, Any]], rule: str,
                command: str) -> dict[str, Any]:
    """What sweep.toml says of how its choice was made."""
    git = git_state()
    return {
        "command": command,
        "suite": suite.name, "suite_version": suite.version, "suite_hash": suite.hash,
        "budget": suite.budget.active(), "seeds": list(suite.seeds), "grid": grid,
        "metric": METRIC,
        "choice_rule": f"{rule}: {RULES[rule]}",
        "records": [str(Path(point_label(p)) / "records") for p in points],
        "git_commit": git.get("commit") or "", "git_dirty": bool(git.get("dirty")),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _write_choice(out: Path, text: str) -> None:
    """out/sweep.toml, replaced atomically; an earlier one is kept as sweep.N.toml."""
    target = check_writable_target(out / "sweep.toml", "sweep choice")  # a link there is refused, not followed
    if target.exists():  # a widened sweep: runs made with the old choice name its sha256, so it stays readable
        kept = next(out / f"sweep.{n}.toml" for n in range(1, 10_000)
                    if not os.path.lexists(out / f"sweep.{n}.toml"))
        try:  # a second name for the old file, which stays at sweep.toml until the new one replaces it whole
            os.link(target, kept)
        except OSError:
            shutil.copy2(target, kept)
    atomic_write_text(target, text, "sweep choice")
