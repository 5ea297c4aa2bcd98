"""Issue 23 and 22: verdicts that never mislead, one probe-trust rule in every view, execution modes.

Every record set here is a copy of a published one (results/smoke/1: pre_ln, sas, sas_p, two seeds each, a
healthy probe) changed in one known way and re-sealed with write_record."""

import copy
import io
import re
from pathlib import Path

from rich.console import Console

from blockbench import stats
from blockbench.display import RunDisplay
from blockbench.records import load_records, record_filename, write_record
from blockbench.suite import load_suite
from blockbench.views import compare, leaderboard, page, report, selection

SMOKE = Path(__file__).resolve().parents[2] / "results" / "smoke" / "1"


def records_like(tmp_path: Path, name: str, change=None) -> Path:
    out = tmp_path / name
    (out / "records").mkdir(parents=True)
    for record in load_records(SMOKE / "records"):
        record = copy.deepcopy(record)
        if change is not None:
            change(record)
        write_record(record, out / "records" / record_filename(record["variant"], record["seed"]))
    return out


def disturb(record):
    """A probe whose rounds disagree (the busy 2-core machine of issue 23: IQRs 1.1-2.5)."""
    if record["variant"] != "pre_ln":
        record["speed"]["speedup_iqr"] = 1.8


def ratios(records) -> set[str]:
    """Every probe ratio of the records, written as the views write them."""
    values = {r["speed"]["speedup_vs_baseline"] for r in records if r["variant"] != "pre_ln"}
    return {f"{v:.3f}" for v in values} | {f"{v:.2f}" for v in values}


def test_the_probe_rule_reads_the_spread_of_the_rounds_too():
    healthy = load_records(SMOKE / "records")
    assert stats.probe_disturbed_note(healthy) is None
    busy = copy.deepcopy(healthy)
    for r in busy:
        disturb(r)
    assert "interquartile range of up to 1.80" in stats.probe_disturbed_note(busy)
    assert stats.untrusted_cell(1.8) == "untrusted (IQR 1.80)"
    assert stats.share_of_bound(0.827, 1.2) is None and stats.share_of_bound(1.1, 1.2) == "50% of the blocks' bound"


def test_no_view_shows_a_ratio_from_a_disturbed_probe(tmp_path, monkeypatch):
    busy = records_like(tmp_path, "busy", disturb)
    records = load_records(busy / "records")
    numbers = ratios(records)

    leaderboard.generate(busy, warn=lambda message: None)
    board = (busy / "leaderboard.md").read_text()
    ranking = board.split("## Ranking")[1].split("## ")[0]
    assert "untrusted (IQR 1.80)" in ranking and not any(n in ranking for n in numbers)
    csv = (busy / "leaderboard.csv").read_text()
    assert not any(n in csv for n in ratios(records) if len(n) > 4)

    result = compare.compare_paths(str(busy), str(busy))
    speed = [r for r in result["rows"] if r["metric"].startswith("speedup") and r["variant"] != "pre_ln"]
    assert speed and all(r["baseline"] == r["candidate"] == "untrusted (IQR 1.80)" and r["ratio"] is None
                         for r in speed)

    # The report: no ratio, no share of a bound, and the figure draws no speed point.
    drawn: list[float] = []
    from matplotlib.axes import Axes

    for name in ("plot", "errorbar"):
        original = getattr(Axes, name)

        def spy(self, *args, _original=original, **kwargs):
            if args and hasattr(args[0], "__len__"):
                drawn.extend(float(x) for x in args[0])
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Axes, name, spy)
    claims, figure = report.check_claims(records)
    throughput = next(c for c in claims if "throughput" in c.title)
    # Nothing was measured: no verdict, with its cause (not "not resolvable", which is a measurement that could not
    # decide), and the magnitude says the same.
    assert throughput.verdict == report.NO_VERDICT and "untrusted (IQR 1.80)" in throughput.measured
    assert throughput.words == "no verdict: probe untrusted (IQR 1.80)"
    assert throughput.magnitude == "n/a: probe untrusted (IQR 1.80)"
    assert not any(n in throughput.measured for n in numbers) and "bound" not in throughput.measured.split(";")[2]
    report.plot_claims(claims, figure)
    speedups = {round(r["speed"]["speedup_vs_baseline"], 6) for r in records if r["variant"] != "pre_ln"}
    assert not speedups & {round(x, 6) for x in drawn}

    # `blockbench run`'s closing table.
    out = io.StringIO()
    display = RunDisplay(load_suite("smoke"), quiet=True, console=Console(file=out, width=250))
    display.records = records
    display.summary(str(busy))
    text = out.getvalue()
    assert "untrusted (IQR 1.80)" in text and "rounds disagree" in text
    assert not any(re.search(rf"\b{re.escape(n)}\b", text) for n in numbers if len(n) > 4)


def plateau(record):
    """SAS stuck on the unigram plateau: every evaluation after the first at 5.0 nats (above 0.55 ln 257)."""
    if record["variant"] == "sas":
        for point in record["curve"][1:]:
            if point["eval_loss"] is not None:
                point["eval_loss"] = 5.0
        record["summary"]["final_eval_loss"] = 5.0
        record["summary"].pop("plateau_steps", None)
        record["summary"].pop("plateau_escape_step", None)


def test_a_pair_on_the_plateau_is_not_converged_in_report_and_compare(tmp_path):
    stuck = records_like(tmp_path, "stuck", plateau)
    records = load_records(stuck / "records")
    claims, _ = report.check_claims(records)
    sas = next(c for c in claims if c.title == "SAS matches Pre-LN per step")
    assert sas.verdict == report.NOT_CONVERGED and "sas on the unigram plateau" in sas.measured
    report.generate_report(str(stuck))
    text = (stuck / "REPORT.md").read_text()
    assert "## When each run left the unigram plateau" in text and "| sas | - | - | - | 2 | 2 |" in text
    assert "1 not converged" in text

    result = compare.compare_paths(str(records_like(tmp_path, "fine")), str(stuck))
    row = next(r for r in result["rows"] if r["variant"] == "sas" and r["metric"] == "eval loss")
    assert row["verdict"] == "not converged" and row["failure"] and result["exit_code"] == 1
    back = compare.compare_paths(str(stuck), str(stuck))
    row = next(r for r in back["rows"] if r["variant"] == "sas" and r["metric"] == "eval loss")
    assert row["verdict"] == "not converged" and not row["failure"]  # stuck on both sides: no regression


def test_a_diverged_seed_never_makes_a_claim_reproduced(tmp_path):
    """SAS-P diverged on one of two seeds: the old rule turned that alone into a verdict ("worse" reproduced,
    "matches" not reproduced); now the surviving seed is judged (one seed: no interval) and the divergence is
    said beside the verdict."""
    def change(record):
        if record["variant"] == "sas_p" and record["seed"] == 1:
            record["status"] = "diverged"
            record["summary"]["final_eval_loss"] = None
    losses = {"pre_ln": {0: 2.0, 1: 2.1}, "sas_p": {0: 2.0, 1: None}}
    d = report.loss_difference(losses, "pre_ln", "sas_p")
    assert report.worse(d, 0.0) == report.UNRESOLVED and d.divergence() == "sas_p diverged on 1/2 seeds"
    all_gone = report.loss_difference({"pre_ln": {0: 2.0}, "sas_p": {0: None}}, "pre_ln", "sas_p")
    assert report.worse(all_gone, 0.0) == report.DIVERGED
    records = load_records(records_like(tmp_path, "div", change) / "records")
    claims, _ = report.check_claims(records)
    claim = next(c for c in claims if c.title == "SAS-P matches Pre-LN per step")
    assert claim.verdict != report.REPRODUCED and claim.note == "sas_p diverged on 1/2 seeds"


def compiled(record):
    record["config"]["execution"] = {"mode": "compiled"}


def test_execution_mode_is_named_and_speed_never_compares_across_modes(tmp_path):
    eager = records_like(tmp_path, "eager")
    fast = records_like(tmp_path, "compiled", compiled)
    result = compare.compare_paths(str(eager), str(fast))
    speed = [r for r in result["rows"] if r["metric"].startswith("speedup") and r["variant"] != "pre_ln"]
    assert speed and all(r["verdict"] == "n/a" and "different execution modes (compiled, eager)" in r["detail"]
                         for r in speed)
    assert result["candidate"]["execution_modes"] == ["compiled"]

    leaderboard.generate(fast, warn=lambda message: None)
    board = (fast / "leaderboard.md").read_text()
    assert "| execution mode | compiled |" in board and "| dtype | fp32 |" in board
    assert "| MFU peak | none known (no MFU) |" in board

    mixed = records_like(tmp_path, "mixed", lambda r: compiled(r) if r["variant"] == "sas" else None)
    records = load_records(mixed / "records")
    assert "several execution modes" in selection.speed_not_comparable(records)
    claims, figure = report.check_claims(records)
    assert "several execution modes" in figure["speed_disturbed"]
    throughput = next(c for c in claims if "throughput" in c.title)
    assert throughput.words == "no verdict: ratios from several execution modes (compiled, eager)"
    assert throughput.measured.startswith("no ratio shown (")  # not "untrusted (IQR x)": the probe was fine


def test_mfu_peak_is_named_with_dtype_and_source():
    record = {"config": {"dtype": "bf16", "runtime": {"dtype": "auto"}}, "summary": {
        "mfu_peak_flops": 989.5e12, "mfu_peak_source": "table"}}
    facts = dict(leaderboard.setup_facts([record]))
    assert facts["MFU peak"] == "989.5 TFLOP/s, bf16 dense, spec table" and facts["execution mode"] == "eager"


def test_a_target_nobody_reached_is_said_with_the_best_loss(tmp_path):
    def unreachable(record):
        record["to_target"] = {"target": 0.5, "steps": None, "tokens": None, "flops": None, "seconds": None}
    far = records_like(tmp_path, "far", unreachable)
    records = load_records(far / "records")
    text = leaderboard.target_text(records)
    best = leaderboard.lowest_loss(records)
    assert "target not reached by any variant" in text and f"{best[0]:.4f}" in text
    leaderboard.generate(far, warn=lambda message: None)
    assert "**target not reached by any variant; the lowest eval loss" in (far / "leaderboard.md").read_text()


def test_table1_of_a_masked_lm_report_shows_no_untrusted_ratio():
    records = load_records(Path(__file__).resolve().parents[2] / "results" / "paper-bert-cpu" / "1" / "records")
    for r in records:
        if r["variant"] != "pre_ln":
            r["speed"]["speedup_iqr"] = 1.5
    [table] = [block for block in report.workload_sections(records) if isinstance(block, page.Table)]
    row = " | ".join(next(row for row in table.rows if row[0] == "sas_p"))
    assert "untrusted (IQR 1.50)" in row and "1.021" not in row
