"""What `blockbench run` shows: a rich progress bar per run, then a summary table (or plain lines with --quiet)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from blockbench.suite import Suite


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


class RunDisplay:
    def __init__(self, suite: Suite, quiet: bool = False, console: Console | None = None,
                 silent: bool = False) -> None:
        self.suite, self.quiet, self.silent = suite, quiet, silent
        # Piped output (CI logs) gets a wide table instead of rich's 80-column default.
        self.console = console or Console(width=None if Console().is_terminal else 160)
        self.records: list[dict[str, Any]] = []
        self.progress = Progress(
            TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  eval {task.fields[eval]}  {task.fields[tps]} tok/s"),
            TimeRemainingColumn(), console=self.console, disable=quiet, transient=False)
        self.task = None

    def __enter__(self) -> RunDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def event(self, kind: str, info: dict[str, Any]) -> None:
        if kind == "data" and not self.quiet:
            self.console.print(f"[dim]loading corpus {info['corpus']} ({info['tokenizer']} tokenizer)...[/dim]")
        elif kind == "data_ready":
            self.log(f"data: {info['corpus']} {info['fingerprint'][:12]}, {info['tokenizer_id']}, "
                     f"{info['n_tokens_train']:,} train / {info['n_tokens_val']:,} val tokens")
        elif kind == "probe" and info["rounds"]:
            self.log(f"speed probe: {len(info['variants'])} variants x {info['rounds']} interleaved rounds")
            if not self.quiet:
                self.console.print(f"[dim]speed probe: {len(info['variants'])} variants, {info['rounds']} "
                                   "interleaved rounds...[/dim]")
        elif kind == "start":
            self.task = self.progress.add_task(f"{info['variant']} seed {info['seed']}", total=None,
                                               loss="-", eval="-", tps="-")
        elif kind == "progress" and self.task is not None:
            fields = {"loss": _fmt(info.get("train_loss"), ".3f"), "tps": f"{info['tokens_per_second']:,.0f}"}
            if info.get("eval_loss") is not None:
                fields["eval"] = _fmt(info["eval_loss"], ".3f")
            self.progress.update(self.task, completed=info["step"], total=info.get("horizon"), **fields)
        elif kind == "done":
            record = info["record"]
            self.records.append(record)
            s = record["summary"]
            if self.task is not None:
                self.progress.update(self.task, completed=s["steps"], total=s["steps"],
                                     eval=_fmt(s["final_eval_loss"], ".3f"))
            self.log(f"{record['variant']} seed {record['seed']}: {record['status']} after {s['steps']} steps "
                     f"({record['stop_reason']}), eval loss {_fmt(s['final_eval_loss'])}, "
                     f"{s['tokens_per_second']:,.0f} tok/s -> {info['path']}")

    def log(self, message: str) -> None:
        if self.quiet and not self.silent:
            print(message, flush=True)

    def summary(self, out_dir: str) -> None:
        if not self.records or self.silent:
            return
        target = self.suite.eval.target_loss
        table = Table(title=f"suite {self.suite.name} v{self.suite.version}: budget {self.suite.budget.active()}, "
                            f"target {target}")
        for column in ("variant", "seed", "status", "steps", "eval loss", "bpb", "tok/s",
                       "speedup (interleaved)", "steps to target", "params", "peak mem MB"):
            table.add_column(column, justify="left" if column in ("variant", "status") else "right")
        for r in self.records:
            s = r["summary"]
            ratio = r["speed"]["speedup_vs_baseline"]
            mem = s["peak_memory_bytes"]
            table.add_row(r["variant"], str(r["seed"]), r["status"], str(s["steps"]), _fmt(s["final_eval_loss"]),
                          _fmt(s["final_eval_bpb"], ".3f"), f"{s['tokens_per_second']:,.0f}", _fmt(ratio, ".3f"),
                          _fmt(r["to_target"]["steps"], ".1f"), f"{r['static']['params_total']:,}",
                          "-" if mem is None else f"{mem / 2**20:.1f}")
        self.console.print(table)
        kind = self.records[0]["summary"]["peak_memory_kind"]
        self.console.print(f"records: {out_dir}/records  (peak memory: {kind})")
