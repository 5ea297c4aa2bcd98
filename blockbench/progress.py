"""What `blockbench run` shows: a rich progress bar per run, then a summary table (or plain lines with --quiet):
a row per run, the run's own cells (variant, seed, status, steps) then the `terminal` cell of each leaderboard column
that has one (views/columns.py, with the suite's workload's metric columns), in the column list's order.

Names, corpora and messages come from the suite, a user block or a run's failure: every such text goes out as
one printable line (untrusted.plain: no ESC) and, where rich would parse it, escaped (untrusted.rich) or as a
rich Text, so a `[bold]` or `[/x]` in a name is shown, never parsed (a stray closing tag would crash the run)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from blockbench import stats
from blockbench.suite import Suite
from blockbench.untrusted import plain, rich
from blockbench.views.columns import RunCell, RunContext, with_metrics


def _rung_of(record: dict[str, Any]) -> Any:
    return (record["config"].get("ladder") or {}).get("rung")


def _run_name(record: dict[str, Any]) -> str:
    """The variant, prefixed by its rung in a ladder's run."""
    rung = _rung_of(record)
    return f"{rung}: {record['variant']}" if rung else record["variant"]


def _status(record: dict[str, Any], context: RunContext) -> str:
    return record["status"] + (" (plateau)" if stats.plateau_steps(record) is not None else "")


# A run's own cells, before the columns' (a leaderboard row is a variant's: it has no seed or step count).
_RUN_CELLS = (RunCell("variant", lambda r, c: _run_name(r), words=True), RunCell("seed", lambda r, c: str(r["seed"])),
              RunCell("status", _status, words=True), RunCell("steps", lambda r, c: str(r["summary"]["steps"])))


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def time_line(records: list[dict[str, Any]], wall_seconds: float, probe_seconds: float = 0.0) -> str:
    """Where this invocation's wall time went: the runs' timed training steps, their evaluations and untimed
    warm-up (compile, graph capture), the speed probe, and the rest (process start-ups, data, model builds,
    failed runs)."""
    parts = {name: sum(r["summary"][key] for r in records)
             for name, key in (("training steps", "train_seconds"), ("evaluations", "eval_seconds"),
                               ("warm-up", "warmup_seconds"))}
    parts["speed probe"] = probe_seconds
    parts["start-ups, data, builds"] = max(wall_seconds - sum(parts.values()), 0.0)
    share = ", ".join(f"{name} {100 * v / wall_seconds:.0f}% ({v:.0f} s)" for name, v in parts.items())
    return f"time: {wall_seconds:.0f} s wall; {share}"


class RunDisplay:
    def __init__(self, suite: Suite, quiet: bool = False, console: Console | None = None,
                 silent: bool = False) -> None:
        self.suite, self.quiet, self.silent = suite, quiet, silent
        # Piped output (CI logs) gets a wide table instead of rich's 80-column default.
        self.console = console or Console(width=None if Console().is_terminal else 160)
        self.records: list[dict[str, Any]] = []
        self.progress = Progress(
            TextColumn("{task.description:<44}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  eval {task.fields[eval]}  {task.fields[tps]} tok/s"),
            TimeRemainingColumn(), console=self.console, disable=quiet, transient=False)
        self.tasks: dict[tuple[str, str, int], Any] = {}  # (grid point, variant, seed) -> progress task
        self.counts = {"queued": 0, "running": 0, "done": 0, "failed": 0}
        self.failures: list[dict[str, Any]] = []
        self.overall = None
        self.started = time.monotonic()
        self.probe_started: float | None = None
        self.probe_seconds = 0.0

    def __enter__(self) -> RunDisplay:
        self.started = time.monotonic()
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def event(self, kind: str, info: dict[str, Any]) -> None:
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(info)

    def _on_data(self, info: dict[str, Any]) -> None:
        if not self.quiet:
            self.console.print(f"[dim]loading corpus {rich(info['corpus'])} ({rich(info['tokenizer'])} "
                               "tokenizer)...[/dim]")

    def _on_data_ready(self, info: dict[str, Any]) -> None:
        self.log(f"data: {info['corpus']} {info['fingerprint'][:12]}, {info['tokenizer_id']}, "
                 f"{info['n_tokens_train']:,} train / {info['n_tokens_val']:,} val tokens")

    def _on_probe(self, info: dict[str, Any]) -> None:
        self.probe_started = time.monotonic()
        if info["rounds"]:
            speed = self.suite.speed
            what = (f"{len(info['variants'])} variants and an A/A control, at least {info['rounds']} interleaved "
                    f"rounds, until every ratio's 95% interval is within ±{speed.target_half_width:.0%} or the "
                    "time cap")
            self.log(f"speed probe: {what}")
            if not self.quiet:
                self.console.print(f"[dim]speed probe: {what}...[/dim]")

    def _on_queued(self, info: dict[str, Any]) -> None:
        if self.probe_started is not None:
            self.probe_seconds += time.monotonic() - self.probe_started
            self.probe_started = None
        self.counts["queued"] = info["queued"]
        skipped = f" ({info['skipped']} already finished: kept)" if info["skipped"] else ""
        self.log(f"runs: {info['queued']} to run{skipped}")
        self.overall = self.progress.add_task("runs", total=info["queued"], loss="-", eval="-", tps="-")
        self._update_overall()

    def _on_start(self, info: dict[str, Any]) -> None:
        self.counts["queued"] -= 1
        self.counts["running"] += 1
        self._update_overall()
        key = self._key(info)
        retry = f" (attempt {info['attempt']})" if info.get("attempt", 1) > 1 else ""
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(rich(self._name(info)) + retry, total=None,
                                                     loss="-", eval="-", tps="-")
        where = (f" on {info['host']}" if info.get("host") else "") + (f" (pid {info['pid']})" if "pid" in info
                                                                         else "")
        self.log(f"{self._name(info)}: started{retry}{where}")

    def _on_progress(self, info: dict[str, Any]) -> None:
        if self._key(info) not in self.tasks:
            return
        fields = {"loss": _fmt(info.get("train_loss"), ".3f"), "tps": f"{info['tokens_per_second']:,.0f}"}
        if info.get("eval_loss") is not None:
            fields["eval"] = _fmt(info["eval_loss"], ".3f")
        self.progress.update(self.tasks[self._key(info)], completed=info["step"], total=info.get("horizon"),
                             **fields)

    def _on_probe_retry(self, info: dict[str, Any]) -> None:
        self.warn(f"speed probe: {info['message']}; retrying (attempt {info['attempt'] + 1} of "
                  f"{info['max_retries'] + 1})")

    def _on_retry(self, info: dict[str, Any]) -> None:
        self.counts["running"] -= 1
        self.counts["queued"] += 1
        self._update_overall()
        self.warn(f"{self._name(info)}: {info['message']}; retrying (attempt {info['attempt'] + 1} of "
                  f"{info['max_retries'] + 1})")

    def _on_failed(self, info: dict[str, Any]) -> None:
        self.counts["running"] -= 1
        self.counts["failed"] += 1
        self._update_overall()
        self.failures.append(info)
        self.warn(f"{self._name(info)}: FAILED ({info['error_type']}: {info['message']}) -> {info['path']}")

    def _on_done(self, info: dict[str, Any]) -> None:
        self.counts["running"] -= 1
        self.counts["done"] += 1
        self._update_overall()
        record = info["record"]
        self.records.append(record)
        s = record["summary"]
        task = self.tasks.get(self._key(info))
        if task is not None:
            self.progress.update(task, completed=s["steps"], total=s["steps"], eval=_fmt(s["final_eval_loss"], ".3f"))
        self.log(f"{self._name(info)}: {record['status']} after {s['steps']} steps "
                 f"({record['stop_reason']}), eval loss {_fmt(s['final_eval_loss'])}, "
                 f"{s['tokens_per_second']:,.0f} tok/s -> {info['path']}")

    @staticmethod
    def _key(info: dict[str, Any]) -> tuple[str, str, int]:
        return info.get("label", ""), info["variant"], info["seed"]

    @staticmethod
    def _name(info: dict[str, Any]) -> str:
        name = f"{info['variant']} seed {info['seed']}"
        return f"{info['label']}: {name}" if info.get("label") else name

    def _update_overall(self) -> None:
        c = self.counts
        text = f"runs: {c['queued']} queued, {c['running']} running, {c['done']} done, {c['failed']} failed"
        if self.overall is not None:
            self.progress.update(self.overall, description=text, completed=c["done"] + c["failed"])

    def warn(self, message: str) -> None:
        if self.silent:
            return
        if self.quiet:
            print(plain(message), flush=True)
        else:
            self.progress.console.print(plain(message), markup=False, highlight=False)

    def log(self, message: str) -> None:
        if self.quiet and not self.silent:
            print(plain(message), flush=True)

    def summary(self, out_dir: str) -> None:
        if self.silent or not (self.records or self.failures):
            return
        ladder = self.suite.ladder is not None  # a probe and a floor per rung: `blockbench ladder` shows them
        table, untrusted = self._table(ladder)
        self.console.print(table)
        kind = self.records[0]["summary"]["peak_memory_kind"] if self.records else "-"
        where = f"{out_dir}/RUNG/records" if ladder else f"{out_dir}/records"
        self.console.print(plain(f"records: {where}  (peak memory: {kind})"), markup=False)
        if untrusted:
            self.console.print(f"speed: {untrusted}", highlight=False, markup=False)
        elif not ladder and (line := stats.probe_facts(self.records)) is not None:
            self.console.print(plain(f"speed: {line}"), highlight=False, markup=False)
        if self.failures:
            self.console.print(plain(f"failed runs: {len(self.failures)}, see {out_dir}/failures/"), markup=False)
        if self.records:
            self.console.print(time_line(self.records, time.monotonic() - self.started, self.probe_seconds),
                               highlight=False, markup=False)
        if self.records and ladder:  # rungs are not ranked together: the ladder view fits them
            self.console.print(plain(f"ladder: one directory per rung under {out_dir}; `blockbench ladder {out_dir}` "
                                     "fits the loss-compute law and gives each variant's compute multiplier"),
                               highlight=False, markup=False)
        elif self.records:  # the table's order is a verdict only if it had stopped moving: say which
            variants = {r["variant"] for r in self.records}
            ranked = [v for v in variants if all(r["status"] == "ok" for r in self.records if r["variant"] == v)]
            line = stats.stability(self.records, f"{self.suite.name}/{self.suite.version}", ranked).line(plain)
            self.console.print(line, highlight=False, markup=False)

    def _table(self, ladder: bool) -> tuple[Table, str | None]:
        """The summary table (a row per run, per failed run and the A/A control's), and why the speed probe is not
        trusted (None: it is)."""
        cells = [c.terminal for c in with_metrics(self.suite.get_workload().metrics) if c.terminal is not None]
        table = Table(title=Text(plain(f"suite {self.suite.name} v{self.suite.version}: budget "
                                       f"{self.suite.budget.active()}, target {self.suite.eval.target_loss}")))
        for cell in (*_RUN_CELLS, *cells):
            table.add_column(cell.header, justify="left" if cell.words else "right")
        # The views' rule for the speed probe, here too: a ratio from an untrusted probe is no number at all.
        # A ladder's rungs each have their own probe: one rung's probe step is no measure of another's training.
        by_rung: dict[Any, list[dict[str, Any]]] = {}
        for r in self.records:
            by_rung.setdefault(_rung_of(r), []).append(r)
        notes = {rung: stats.probe_disturbed_note(group) for rung, group in by_rung.items()}
        untrusted = "; ".join(f"rung {plain(str(rung))}: {note}" if rung is not None else note
                              for rung, note in notes.items() if note) or None
        context = RunContext(untrusted=lambda r: notes[_rung_of(r)] is not None)
        for r in self.records:
            table.add_row(*(Text(plain(c.text_of(r, context))) for c in (*_RUN_CELLS, *cells)))
        blank = ["-"] * len(_RUN_CELLS)
        for f in self.failures:  # no record: "-" in every cell after its name, seed and status
            table.add_row(Text(plain(f["variant"])), str(f["seed"]), "failed", *blank[3:], *["-"] * len(cells))
        probe = next((r["speed"] for r in self.records if r["speed"].get("control")), None)
        if probe is not None and untrusted is None and not ladder:  # the A/A control's row: the floor, no speed-up
            table.add_row(Text(plain(f"{probe['control']['name']} (A/A control)")), *blank[1:],
                          *(Text(plain(c.control(probe))) if c.control else "-" for c in cells))
        return table, untrusted
