"""Ladder suites: the [ladder] table read and checked, expanded into one suite per rung, run through the runner,
and `blockbench ladder` over what comes out."""

import json
import math

import pytest
from rich.console import Console

from blockbench.cli import main
from blockbench.ladder import LR_RULES, non_embedding_params
from blockbench.progress import RunDisplay
from blockbench.rungs import describe, rung_suites
from blockbench.suite import SuiteError, load_suite
from blockbench.untrusted import md
from blockbench.views.ladder import headline, multiplier_rows
from tests.tiny_suite import TINY_SUITE, write_suite

RUNGS = """
[ladder]
lr_rule = "inverse-width"
references = ["sas_p"]
rungs = [
    {name = "a", n_layers = 1, d_model = 32, n_heads = 2, tokens = 768},
    {name = "b", n_layers = 1, d_model = 48, n_heads = 2, tokens = 1024},
    {name = "c", n_layers = 2, d_model = 48, n_heads = 2, tokens = 1280},
]
"""
LADDER = TINY_SUITE.replace('name = "tiny"', 'name = "tiny-ladder"') + RUNGS


def ladder_file(tmp_path, text=LADDER):
    return write_suite(tmp_path, text, "ladder.toml")


def test_builtin_ladders_parse_and_grow_in_compute():
    for name in ("ladder-smoke", "ladder-cpu", "ladder-gpu"):
        suite = load_suite(name)
        rows = describe(suite)
        assert len(rows) >= 3
        flops = [row["baseline_flops"] for row in rows]
        assert all(b > a for a, b in zip(flops, flops[1:])), name
    cpu = describe(load_suite("ladder-cpu"))
    assert len(cpu) >= 4 and cpu[-1]["baseline_flops"] / cpu[0]["baseline_flops"] >= 8  # the span
    assert len(load_suite("ladder-cpu").seeds) >= 3


def test_rungs_take_shape_budget_and_learning_rate_by_rule(tmp_path):
    suite = load_suite(str(ladder_file(tmp_path)))
    rungs = rung_suites(suite)
    assert [r.rung["rung"] for r in rungs] == ["a", "b", "c"]
    assert [(r.model.n_layers, r.model.d_model) for r in rungs] == [(1, 32), (1, 48), (2, 48)]
    # Explicit tokens in whole steps of 4 x 32 = 128 tokens.
    assert [r.budget.steps for r in rungs] == [6, 8, 10]
    # inverse-width from the reference width 32: sas_p's 1e-2 and the suite's 3e-3 for pre_ln.
    assert rungs[1].variant_optim("sas_p").lr == pytest.approx(1e-2 * 32 / 48)
    assert rungs[2].variant_optim("pre_ln").lr == pytest.approx(3e-3 * 32 / 48)
    config = rungs[2].to_config()
    assert config["ladder"]["rung"] == "c" and config["ladder"]["index"] == 2
    assert config["ladder"]["lr_rule"].startswith("inverse-width")
    assert rungs[0].hash == suite.hash  # one file, one identity


def test_tokens_per_param_counts_the_baselines_non_embedding_parameters(tmp_path):
    text = LADDER.replace(', tokens = 768', '').replace(', tokens = 1024', '').replace(', tokens = 1280', '')
    text = text.replace('lr_rule = "inverse-width"', 'lr_rule = "constant"\ntokens_per_param = 0.5')
    suite = load_suite(str(ladder_file(tmp_path, text)))
    for row, shaped in zip(describe(suite), rung_suites(suite)):
        expected = math.ceil(0.5 * row["non_embedding_params"] / 128)
        assert shaped.budget.steps == expected
        assert shaped.variant_optim("sas_p").lr == 1e-2  # constant rule
    # Pre-LN's non-embedding parameters at L=1, d=32: its 12 d^2 block matrices and three norm scales of d (two in
    # the block, the final one); neither the embeddings nor the output head.
    from blockbench.ladder import meta_model

    assert non_embedding_params(meta_model(rung_suites(suite)[0], "pre_ln")) == 12 * 32 * 32 + 3 * 32


def test_explicit_learning_rates_per_rung_win_over_the_rule(tmp_path):
    text = LADDER + "\n[ladder.lr]\npre_ln = [1e-3, 2e-3, 4e-3]\n"
    rungs = rung_suites(load_suite(str(ladder_file(tmp_path, text.replace("[ladder]\n", "[ladder]\n", 1)))))
    assert [r.variant_optim("pre_ln").lr for r in rungs] == [1e-3, 2e-3, 4e-3]


@pytest.mark.parametrize("change, needle", [
    (lambda t: t.replace('    {name = "c", n_layers = 2, d_model = 48, n_heads = 2, tokens = 1280},\n', ''),
     "ladder.rungs: 2 rung(s); a ladder needs at least 3"),
    (lambda t: t.replace('{name = "b", n_layers = 1, d_model = 48, n_heads = 2',
                         '{name = "b", n_layers = 1, d_model = 50, n_heads = 3'),
     "ladder.rungs[1] (b).n_heads: d_model=50 is not divisible by n_heads=3"),
    (lambda t: t.replace('n_layers = 2, d_model = 48, n_heads = 2, tokens = 1280',
                         'n_layers = 1, d_model = 48, n_heads = 2, tokens = 512'),
     "ladder.rungs[2] (c): training compute"),
    (lambda t: t + "\n[ladder.lr]\npre_ln = [1e-3, 2e-3]\n", "no learning rate for rung 'c'"),
    (lambda t: t.replace('references = ["sas_p"]', 'references = ["olmo2"]'),
     "ladder.references: 'olmo2' is not one of the suite's variants"),
    (lambda t: t.replace('lr_rule = "inverse-width"', 'lr_rule = "sqrt"'), "ladder.lr_rule: 'sqrt' is not one of"),
    (lambda t: t.replace('{name = "a", n_layers = 1', '{name = "a", depth = 3, n_layers = 1'),
     "ladder.rungs[0].depth: unknown key"),
    (lambda t: t.replace(', tokens = 768', ''), "ladder.rungs[0] (a): no token budget"),
    (lambda t: t.replace('name = "b"', 'name = "a"'), "'a' names two rungs"),
])
def test_bad_ladders_exit_2_naming_the_rung(tmp_path, capsys, change, needle):
    path = ladder_file(tmp_path, change(LADDER))
    with pytest.raises(SuiteError, match="ladder"):
        load_suite(str(path))
    assert main(["run", "--suite", str(path), "--out", str(tmp_path / "out"), "--quiet", "--in-process"]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_a_budget_override_on_a_ladder_is_refused(tmp_path, capsys):
    path = ladder_file(tmp_path)
    assert main(["run", "--suite", str(path), "--budget-steps", "3", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "is a ladder" in capsys.readouterr().err


def test_lr_rules_are_named():
    assert set(LR_RULES) == {"inverse-width", "constant"}


@pytest.fixture(scope="module")
def ladder_run(tmp_path_factory):
    """The tiny ladder run once, in process: 2 variants x 3 rungs x 2 seeds."""
    tmp = tmp_path_factory.mktemp("ladder")
    path = ladder_file(tmp)
    out = tmp / "out"
    assert main(["run", "--suite", str(path), "--out", str(out), "--seeds", "0,1", "--quiet", "--in-process"]) == 0
    return path, out


def test_a_ladder_run_writes_one_directory_per_rung_with_its_probe(ladder_run):
    _, out = ladder_run
    for rung, steps in (("a", 6), ("b", 8), ("c", 10)):
        records = sorted((out / rung / "records").glob("*.json"))
        assert [p.name for p in records] == ["pre_ln-seed0.json", "pre_ln-seed1.json", "sas_p-seed0.json",
                                             "sas_p-seed1.json"]
        record = json.loads(records[0].read_text())
        assert record["config"]["ladder"]["rung"] == rung
        assert record["summary"]["steps"] == steps
        assert (out / rung / "probe.json").exists()


def test_ladder_view_writes_its_files_and_json(ladder_run, tmp_path, capsys):
    _, out = ladder_run
    dest = tmp_path / "view"
    assert main(["ladder", str(out), "--out", str(dest), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for name in ("ladder.md", "ladder.html", "ladder.json", "ladder.png"):
        assert (dest / name).stat().st_size > 0
    entry = data["variants"]["sas_p"]
    for key in ("flops_multiplier", "flops_multiplier_ci", "tokens_multiplier", "wallclock_multiplier", "verdict",
                "rollout_error"):
        assert key in entry
    assert data["baseline"] == "pre_ln" and "pre_ln" not in data["variants"]
    assert [r["rung"] for r in data["rungs"]] == ["a", "b", "c"]
    # The second reference: sas_p as the baseline of its own analysis.
    assert "sas_p" in data["references"] and "pre_ln" in data["references"]["sas_p"]["variants"]
    # Wall-clock is a number only with a reason-free comparison, else null with the reason.
    assert (entry["wallclock_multiplier"] is None) == bool(entry["wallclock_reason"])
    page = (dest / "ladder.md").read_text()
    assert "sas_p" in page.splitlines()[2]  # the headline first, the page's .headline paragraph in HTML
    html = (dest / "ladder.html").read_text()
    assert html.index('<p class="headline">') < html.index("<table") and "data-ranking" in html


def test_ladder_view_bad_input_is_one_line(ladder_run, tmp_path, capsys):
    _, out = ladder_run
    assert main(["ladder", str(tmp_path / "nothing")]) == 2
    assert "no such directory" in capsys.readouterr().err
    plain_run = tmp_path / "plain" / "records"
    plain_run.mkdir(parents=True)
    plain_run.joinpath("x.json").write_text((out / "a" / "records" / "pre_ln-seed0.json").read_text()
                                            .replace('"ladder":', '"not_ladder":'))
    assert main(["ladder", str(tmp_path / "plain")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("no ladder records" in err or "records" in err)


def test_ladder_without_the_baseline_at_a_rung_says_which(ladder_run, tmp_path, capsys):
    import shutil

    _, out = ladder_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for p in (copy / "b" / "records").glob("pre_ln-*.json"):
        p.unlink()
    assert main(["ladder", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "rung 'b' has no finished run of the baseline pre_ln" in err and err.count("\n") == 1


def test_a_variant_missing_at_a_rung_gets_no_multiplier_and_says_so(ladder_run, tmp_path):
    import shutil

    from blockbench.views.ladder import write_ladder

    _, out = ladder_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for p in (copy / "c" / "records").glob("sas_p-*.json"):
        p.unlink()
    _, data = write_ladder(copy)
    entry = data["variants"]["sas_p"]
    assert entry["flops_multiplier"] is None and "no finished run at rung c" in entry["verdict"]


def test_resume_reruns_only_the_missing_run_of_a_rung(ladder_run, tmp_path):
    import shutil

    path, out = ladder_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / ".lock").unlink(missing_ok=True)
    missing = copy / "b" / "records" / "sas_p-seed1.json"
    kept = {p: p.stat().st_mtime_ns for p in copy.rglob("*.json") if p != missing}
    missing.unlink()
    assert main(["run", "--suite", str(path), "--out", str(copy), "--seeds", "0,1", "--resume", "--quiet",
                 "--in-process"]) == 0
    assert missing.exists()
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())


def test_a_failed_baseline_law_gives_one_headline_and_no_multiplier_cells():
    rung = lambda a, b: {"rung": "r", "shape": {"n_layers": 2, "d_model": 64},  # noqa: E731
                         "variants": {"pre_ln": {"seeds": 3, "mean_loss": a}, "sas_p": {"seeds": 3, "mean_loss": b}}}
    data = {"baseline": "pre_ln", "level": 0.9, "law": {"failed": "lack-of-fit F test: F=115, p=3.9e-07"},
            "rungs": [rung(2.5, 2.6), rung(2.0, 2.2), rung(1.5, 1.6)],
            "variants": {"sas_p": {"verdict": "fit failed (lack-of-fit F test: F=115, p=3.9e-07)",
                                   "failed": "lack-of-fit F test: F=115, p=3.9e-07", "flops_multiplier": 40.0}}}
    text = headline(data, escape=str)
    assert text.startswith("no multiplier: the law L(C) = E + A*C^-alpha does not describe pre_ln's rungs")
    assert "every rung orders the mean losses pre_ln < sas_p" in text
    assert "40" not in " ".join(multiplier_rows(data)[0])  # a failed fit shows no number that reads as a result
    data["rungs"][1] = rung(2.3, 2.2)  # the rungs disagree: no order claimed
    assert "orders" not in headline(data, escape=str)


def test_the_run_table_judges_each_rungs_probe_by_that_rungs_training(ladder_run):
    """A small rung's probe steps are far shorter than a large rung's training steps: no sign of overload. Only a
    rung whose probe was slow against its own training is untrusted, and the line names it."""
    _, out = ladder_run
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*/records/*.json"))]
    for r in records:  # rung c's steps, probed and trained alike, take 50x those of a and b (a bigger model, say)
        slow = 50.0 if r["config"]["ladder"]["rung"] == "c" else 1.0
        r["summary"]["step_time_median"] = r["speed"]["step_time_median"] = slow
    display = RunDisplay(load_suite("ladder-smoke"), console=Console(record=True, width=250))
    display.records = records
    display.summary("out")
    assert "untrusted" not in display.console.export_text()
    for r in records:
        if r["config"]["ladder"]["rung"] == "a":
            r["speed"]["step_time_median"] = 5.0  # rung a's probe: 5x its own training steps
    display = RunDisplay(load_suite("ladder-smoke"), console=Console(record=True, width=250))
    display.records = records
    display.summary("out")
    shown = display.console.export_text()
    assert "speed: rung a: the interleaved probe's steps took 5x" in shown
    assert sum("untrusted" in line for line in shown.splitlines() if line.startswith("│ a: ")) > 0
    assert not any("untrusted" in line for line in shown.splitlines() if line.startswith(("│ b: ", "│ c: ")))


def test_a_failed_law_headline_escapes_the_variant_names_it_orders():
    name = "[x](javascript:alert(1))"
    rung = lambda a, b: {"rung": "r", "variants": {"pre_ln": {"seeds": 2, "mean_loss": a},  # noqa: E731
                                                   name: {"seeds": 2, "mean_loss": b}}}
    data = {"baseline": "pre_ln", "level": 0.9, "law": {"failed": "lack-of-fit F test"},
            "rungs": [rung(2.5, 2.6), rung(2.0, 2.2), rung(1.5, 1.6)], "variants": {}}
    text = headline(data, escape=md)
    assert name not in text and md(name) in text
