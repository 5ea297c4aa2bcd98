"""`blockbench report`: interval arithmetic, verdict rules, claims on (copies of) real records, and REPORT.md."""

import copy
import json
import math
import shutil
import textwrap
from pathlib import Path

import pytest

from blockbench.cli import main
from blockbench.records import load_records, record_filename, write_record
from blockbench.views import report

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "results" / "default" / "1"


def test_paired_interval_exact_numbers():
    ref = {0: 1.0, 1: 2.0, 2: 3.0}
    cand = {0: 1.1, 1: 2.3, 2: 3.2}
    d = report.loss_difference({"a": ref, "b": cand}, "a", "b")
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n); differences 0.1, 0.3, 0.2
    assert d.mean == pytest.approx(0.2) and d.low == pytest.approx(0.2 - half) and d.high == pytest.approx(0.2 + half)
    assert d.method == "paired over seeds 0, 1, 2"


def test_welch_interval_when_seeds_differ():
    d = report.loss_difference({"a": {0: 1.0, 1: 1.2}, "b": {2: 1.5, 3: 1.9}}, "a", "b")
    va, vb = 0.02 / 2, 0.08 / 2  # sample variances over n
    df = (va + vb) ** 2 / (va**2 + vb**2)
    from scipy import stats

    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert d.mean == pytest.approx(0.6) and d.high - d.mean == pytest.approx(half) and d.method.startswith("Welch")


@pytest.mark.parametrize("low, high, no_worse, worse", [
    (-0.10, 0.04, report.REPRODUCED, report.NOT_REPRODUCED),    # within the margin; entirely below +0.05
    (0.06, 0.20, report.NOT_REPRODUCED, report.REPRODUCED),     # entirely above the margin
    (-0.02, 0.08, report.UNRESOLVED, report.UNRESOLVED),        # straddles the margin
])
def test_verdict_rules(low, high, no_worse, worse):
    d = report.Difference("a", "b", (low + high) / 2, low, high, "paired", 0, 0)
    assert report.no_worse(d, 0.05) == no_worse
    assert report.worse(d, 0.05) == worse


def test_divergence_verdicts():
    """A divergence is reported beside the verdict and never makes a claim reproduced by itself (issue 23): with
    no seed left on both sides the verdict is "diverged"; a plateau on either side is "not converged"."""
    nothing_left = report.Difference("a", "b", math.nan, math.nan, math.nan, "", 1, 0, seeds=1, reference_seeds=1)
    assert report.worse(nothing_left, 0.05) == report.no_worse(nothing_left, 0.05) == report.DIVERGED
    survivors = report.Difference("a", "b", 0.2, 0.1, 0.3, "paired", 1, 0, seeds=3, reference_seeds=3)
    assert report.worse(survivors, 0.05) == report.REPRODUCED  # judged on the surviving seeds' interval
    assert survivors.divergence() == "b diverged on 1/3 seeds"
    stuck = report.Difference("a", "b", 2.4, 2.3, 2.5, "paired", 0, 0, not_converged="b on the unigram plateau")
    assert report.worse(stuck, 0.05) == report.no_worse(stuck, 0.05) == report.NOT_CONVERGED
    one_seed = report.Difference("a", "b", 0.3, math.nan, math.nan, "paired", 0, 0)
    assert report.worse(one_seed, 0.05) == report.UNRESOLVED


def test_loss_difference_pairs_the_surviving_seeds():
    losses = {"a": {0: 1.0, 1: 1.1, 2: 1.2}, "b": {0: 1.2, 1: None, 2: 1.5}}
    d = report.loss_difference(losses, "a", "b")
    assert d.mean == pytest.approx(0.25) and d.method == "paired over seeds 0, 2"
    assert d.diverged == 1 and d.seeds == 3 and "on the seeds that survived (b diverged on 1/3 seeds)" in d.text()


def three_seeds(tmp_path: Path, shifts: dict[str, float], noise=(0.0, 0.01, -0.01)) -> Path:
    """The default/1 records as three seeds: seed s adds noise[s] to every variant's final loss, and a variant's
    shift is added on top, so differences between variants are known exactly."""
    out = tmp_path / "results"
    records_dir = out / "records"
    records_dir.mkdir(parents=True)
    pre = {r["variant"]: r for r in load_records(DEFAULT / "records")}
    base = pre["pre_ln"]["summary"]["final_eval_loss"]
    for variant, record in pre.items():
        for seed, eps in enumerate(noise):
            r = copy.deepcopy(record)
            r["seed"] = seed
            final = base + shifts.get(variant, 0.0) + eps * (1 + (variant == "sas"))
            # The whole curve moves with its end, so that its shape (and the plateau detector's reading of it)
            # stays the record's own.
            lift = final - r["summary"]["final_eval_loss"]
            for point in r["curve"]:
                if point["eval_loss"] is not None:
                    point["eval_loss"] += lift
            r["summary"]["final_eval_loss"] = final  # the summary is the curve's end
            write_record(r, records_dir / record_filename(variant, seed))
    return out


def verdicts(directory: Path) -> dict[str, str]:
    records = load_records(directory / "records")
    claims, _ = report.check_claims(records)
    return {c.title: c.verdict for c in claims}


def test_claims_follow_the_records(tmp_path):
    out = three_seeds(tmp_path, {"sas": 0.01, "sas_p": 0.3, "naive_skipless": 0.5, "vskipinit": 0.2,
                                 "sas_p_nonorm": 0.25})
    v = verdicts(out)
    assert v["SAS / SAS-P remove (2L-1)d² parameters from the blocks"] == report.REPRODUCED
    assert v["SAS matches Pre-LN per step"] == report.REPRODUCED            # +0.01 with small noise
    assert v["SAS-P matches Pre-LN per step"] == report.NOT_REPRODUCED      # +0.3: clearly worse
    assert v["naive skipless trains far worse than Pre-LN"] == report.REPRODUCED
    assert v["V-SkipInit is slower per step than SAS"] == report.REPRODUCED  # +0.19 over sas
    assert v["SAS-P without norm is slightly worse per step than SAS-P"] == report.NOT_REPRODUCED  # -0.05
    # The published default/1 probe straddles 1.0 (1.013, IQR 0.18): throughput is not resolvable there.
    assert v["SAS-P trains faster than Pre-LN (throughput)"] == report.UNRESOLVED


def test_tampered_parameter_count_is_not_reproduced(tmp_path):
    records = load_records(three_seeds(tmp_path, {}) / "records")
    for r in records:
        if r["variant"] == "sas":
            r["static"]["params_block_matrices"] += 1
    claims, _ = report.check_claims(records)
    [params] = [c for c in claims if c.title.startswith("SAS / SAS-P remove")]
    assert params.verdict == report.NOT_REPRODUCED


def test_report_is_written_and_regenerates_identically(tmp_path, capsys):
    out = three_seeds(tmp_path, {"naive_skipless": 0.5})
    shutil.copy(DEFAULT / "loss_vs_steps.png", out / "loss_vs_steps.png")
    diagnosis = {"suite": "default", "model": {"n_layers": 4, "d_model": 128},
                 "variants": {"pre_ln": {"cosine": [0.1, 0.5], "rms_norm": [1.0, 1.0]},
                              "naive_skipless": {"cosine": [0.1, 0.99], "rms_norm": [1.0, 1.0]}}}
    (out / "diagnose.json").write_text(json.dumps(diagnosis))
    shutil.copy(DEFAULT / "params.png", out / "diagnose.png")
    assert main(["report", str(out)]) == 0
    text = (out / "REPORT.md").read_text()
    assert "| naive skipless trains far worse than Pre-LN |" in text and "![claims](report_claims.png)" in text
    assert "naive_skipless 0.990, pre_ln 0.500" in text and "![signal propagation](diagnose.png)" in text
    assert "![loss vs steps](loss_vs_steps.png)" in text and "paired over seeds 0, 1, 2" in text
    # REPORT.html is the same text as a page: plots inline, and the guide to the verdicts linked from the top.
    html = (out / "REPORT.html").read_text()
    for src in ("report_claims.png", "loss_vs_steps.png", "diagnose.png"):
        assert f'<img src="{src}"' in html, src
    # CPU runs one after another: their seconds plot is left out, and the report says why.
    assert '<img src="loss_vs_seconds.png"' not in html and "No seconds plot: these runs trained" in html
    assert '<td class="left">naive skipless trains far worse than Pre-LN</td>' in html
    assert 'href="#how-the-verdicts-are-reached"' in html.split("<h2")[0]
    assert '<h2 id="how-the-verdicts-are-reached">' in html and "<em>Simplifying Transformer Blocks</em>" in html
    first = {n: (out / n).read_bytes() for n in ("REPORT.md", "REPORT.html", "report_claims.png")}
    assert main(["report", str(out)]) == 0
    assert {n: (out / n).read_bytes() for n in first} == first


def test_malformed_diagnosis_exits_2_and_keeps_the_old_report(tmp_path, capsys):
    out = three_seeds(tmp_path, {})
    assert main(["report", str(out)]) == 0
    before = (out / "REPORT.md").read_bytes()
    (out / "diagnose.json").write_text("{not json")
    (out / "diagnose.png").write_bytes(b"")
    assert main(["report", str(out)]) == 2
    assert "diagnose.json: not valid JSON" in capsys.readouterr().err
    assert (out / "REPORT.md").read_bytes() == before


@pytest.mark.parametrize("args, needle", [
    (["nowhere/at/all"], "no such directory"),
    (["--margin", "0", str(DEFAULT)], "--margin must be positive"),
])
def test_bad_report_input_exits_2_with_one_line(capsys, args, needle):
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_records_without_pre_ln_are_refused(tmp_path, capsys):
    out = three_seeds(tmp_path, {})
    for path in (out / "records").glob("pre_ln-*.json"):
        path.unlink()
    assert main(["report", str(out)]) == 2
    assert "the claims are relative to pre_ln" in capsys.readouterr().err


def modern_records(tmp_path: Path) -> Path:
    """The three-seed records relabelled as a suite whose baseline is transformer_pp (their losses and counts are
    the paper blocks', which is all the claim machinery reads): pre_ln -> transformer_pp, sas_p -> sas_p_pp,
    sas -> transformer_pp_qknorm, post_ln -> pre_ln, parallel -> sas_p."""
    rename = {"pre_ln": "transformer_pp", "sas_p": "sas_p_pp", "sas": "transformer_pp_qknorm", "post_ln": "pre_ln",
              "parallel": "sas_p"}
    out = three_seeds(tmp_path, {"post_ln": 0.3, "parallel": 0.31})
    records = []
    for path in sorted((out / "records").glob("*.json")):
        records.append(json.loads(path.read_text()))
        path.unlink()  # records are never overwritten: all go before the renamed ones are written
    for record in records:
        if record["variant"] not in rename:
            continue
        record["variant"] = rename[record["variant"]]
        record["config"]["baseline"] = "transformer_pp"
        for r in (record.get("speed") or {},):
            if r.get("baseline"):
                r["baseline"] = "transformer_pp"
        write_record(record, out / "records" / record_filename(record["variant"], record["seed"]))
    return out


def test_a_transformer_pp_baseline_checks_todays_claims(tmp_path):
    records = load_records(modern_records(tmp_path) / "records")
    claims, figure = report.check_claims(records)
    titles = [c.title for c in claims]
    assert figure["claims"] is report.MODERN_CLAIMS
    assert titles[:5] == ["SAS-P on the Transformer++ base removes (2L-1)d² parameters from its blocks",
                          "Transformer++ beats the paper's Pre-LN", "QK-norm helps Transformer++",
                          "SAS-P on the Transformer++ base matches Transformer++ per step",
                          "SAS-P matches Pre-LN per step (the paper's claim, on its own base)"]
    by_title = {c.title: c for c in claims}
    assert by_title[titles[0]].verdict == report.REPRODUCED  # the paper blocks' counts: exactly (2L-1)d² fewer
    assert by_title[titles[1]].pair.candidate == "pre_ln" and by_title[titles[1]].pair.reference == "transformer_pp"
    assert by_title[titles[1]].pair.mean == pytest.approx(0.3, abs=0.05)
    assert by_title[titles[3]].pair.candidate == "sas_p_pp" and by_title[titles[3]].threshold == 0.05
    speed = [c for c in claims if "throughput" in c.title]
    assert all(c.magnitude.startswith(report.NOT_APPLICABLE) for c in speed)
    assert report.power_section(records, 0.05)[1].text.startswith("For each pair")


def test_a_baseline_without_claims_is_refused(tmp_path, capsys):
    out = three_seeds(tmp_path, {})
    for path in (out / "records").glob("*.json"):
        record = json.loads(path.read_text())
        record["config"]["baseline"] = "sas"
        path.unlink()
        write_record(record, path)
    assert main(["report", str(out)]) == 2
    assert "no claims are defined against baseline 'sas'" in capsys.readouterr().err


def test_published_reports_are_what_the_records_give(tmp_path):
    """Every published results/<suite>/<version>/REPORT.md has its REPORT.html beside it, and both (and the claims
    plot) are exactly what `blockbench report` makes of the records."""
    published = sorted((REPO / "results").glob("*/[0-9]*/REPORT.md"))
    assert {p.parent.parent.name for p in published} >= {"paper-cpu", "paper-bert-cpu"}, "no published report"
    # The reports link the GPU check published beside them (results/gpu-check/): the copy keeps that layout.
    shutil.copytree(REPO / "results" / "gpu-check", tmp_path / "gpu-check")
    for path in published:
        assert (path.parent / "REPORT.html").is_file(), f"{path.parent}: REPORT.md without REPORT.html"
        copy_dir = tmp_path / path.parent.parent.name / path.parent.name
        shutil.copytree(path.parent, copy_dir)
        for name in ("REPORT.md", "REPORT.html", "report_claims.png"):
            (copy_dir / name).unlink()
        report.generate_report(str(copy_dir))
        for name in ("REPORT.md", "REPORT.html", "report_claims.png"):
            assert (copy_dir / name).read_bytes() == (path.parent / name).read_bytes(), f"{path.parent}/{name}"


def test_each_claim_carries_its_pair_and_numeric_claims_a_magnitude(tmp_path):
    records = load_records(three_seeds(tmp_path, {"vskipinit": 0.2}) / "records")
    claims = {c.title: c for c in report.check_claims(records)[0]}
    pairs = {title: (c.pair.reference, c.pair.candidate) for title, c in claims.items() if c.pair is not None}
    assert pairs["V-SkipInit is slower per step than SAS"] == ("sas", "vskipinit")
    assert pairs["SAS-P without norm is slightly worse per step than SAS-P"] == ("sas_p", "sas_p_nonorm")
    assert pairs["SAS matches Pre-LN per step"] == ("pre_ln", "sas")
    speed = claims["SAS-P trains faster than Pre-LN (throughput)"]
    assert speed.pair is None and speed.magnitude.startswith(report.NOT_REPRODUCED)  # 1.013 ± 0.09 < 1.16
    assert report.speed_magnitude(1.015, 1.082).startswith(f"{report.NOT_REPRODUCED}: smaller")
    assert report.speed_magnitude(1.10, 1.20).startswith(report.REPRODUCED)
    assert report.speed_magnitude(1.20, 1.30).startswith(f"{report.NOT_REPRODUCED}: larger")
    assert all(c.magnitude.startswith(report.NOT_APPLICABLE) for c in claims.values() if c.pair is not None)


SHIFTS = {"sas": 0.01, "sas_p": 0.3, "naive_skipless": 0.5, "vskipinit": 0.2, "sas_p_nonorm": 0.25}


def disturbed(records: list[dict]) -> list[dict]:
    """The same records with a probe whose rounds disagree (IQR 1.80 on every ratio but the baseline's)."""
    records = copy.deepcopy(records)
    for r in records:
        if r["variant"] != "pre_ln":
            r["speed"]["speedup_iqr"] = 1.8
    return records


def test_the_report_opens_with_one_headline_sentence(tmp_path):
    from blockbench.views import page

    records = load_records(three_seeds(tmp_path, SHIFTS) / "records")
    claims, _ = report.check_claims(records)
    doc = report.report_page(claims, records, 0.05, 0, False)
    assert doc.blocks[0] == page.Para(
        "Of the paper's 7 claims at this scale: 4 reproduced, 2 not reproduced, 1 not resolvable at this scale; "
        "speed: not resolvable at this scale.", "headline")
    html = page.to_html(doc)
    assert html.index('<p class="headline">Of the paper') < html.index("How to read this")
    busy = disturbed(records)
    claims, _ = report.check_claims(busy)
    assert report.headline(claims, busy) == (
        "Of the paper's 7 claims at this scale: 4 reproduced, 2 not reproduced, 0 not resolvable at this scale, "
        "1 no verdict; speed: no verdict, probe untrusted (IQR 1.80).")
    text = page.to_markdown(report.report_page(claims, busy, 0.05, 0, False))
    row = next(line for line in text.splitlines() if line.startswith("| SAS-P trains faster than Pre-LN"))
    assert "| **no verdict**: probe untrusted (IQR 1.80) |" in row and report.UNRESOLVED not in row
    assert "**Summary:** 4 reproduced, 2 not reproduced, 0 not resolvable at this scale, 1 no verdict" in text


def drawn_colours(monkeypatch) -> list[tuple[str, str]]:
    """(text or 'point', colour) of everything plot_claims writes or draws on its axes, and its title."""
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    seen: list[tuple[str, str]] = []
    for name in ("plot", "errorbar", "annotate", "text"):
        original = getattr(Axes, name)

        def spy(self, *args, _original=original, _name=name, **kwargs):
            words = args[0] if _name in ("annotate",) else args[2] if _name == "text" else "point"
            if kwargs.get("color") is not None:
                seen.append((str(words), kwargs["color"]))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Axes, name, spy)
    original_title = Figure.suptitle
    monkeypatch.setattr(Figure, "suptitle", lambda self, t, **kw: seen.append((t, "title")) or original_title(
        self, t, **kw))
    return seen


def test_the_claims_figure_colours_each_claim_by_its_verdict(tmp_path, monkeypatch):
    """The speed claim's point and note were drawn in SAS-P's own colour, green, while the title reserves green
    for "reproduced" and the claim was not resolvable. Every claim now takes its verdict's colour."""
    records = load_records(three_seeds(tmp_path, SHIFTS) / "records")
    claims, figure = report.check_claims(records)
    seen = drawn_colours(monkeypatch)
    report.plot_claims(claims, figure)
    notes = [(t, c) for t, c in seen if t not in ("point",) and c != "title"]
    assert ("faster: not resolvable at this scale\n1.16x: not reproduced", "tab:grey") in notes
    for verdict, colour in report.VERDICT_COLOURS.items():  # every verdict note in its verdict's colour
        assert all(c == colour for t, c in notes if t.split(" (")[0] == verdict), verdict
    assert ("point", "tab:grey") in seen and ("point", "tab:green") in seen and ("point", "tab:red") in seen
    points = [c for t, c in seen if t == "point"]
    assert set(points) <= set(report.VERDICT_COLOURS.values()) | {"black"}  # no variant's own colour
    [title] = [t for t, c in seen if c == "title"]
    assert title == ("the paper's claims at this scale; each claim coloured by its verdict: green reproduced, "
                     "red not reproduced, grey not resolvable at this scale")

    busy = disturbed(records)
    claims, figure = report.check_claims(busy)
    seen.clear()
    report.plot_claims(claims, figure)
    [(box, colour)] = [(t, c) for t, c in seen if t.startswith("no verdict, no speed ratios shown")]
    assert colour == report.VERDICT_COLOURS[report.NO_VERDICT] == "tab:brown"
    assert [t for t, c in seen if c == "title"] == [
        "the paper's claims at this scale; each claim coloured by its verdict: green reproduced, red not reproduced, "
        "brown no verdict"]
    assert box == "no verdict, no speed ratios shown:\n" + textwrap.fill(figure["speed_disturbed"], 48)
