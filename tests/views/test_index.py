"""`blockbench leaderboard --index`: results/index.html and results/README.md, one landing page over every result."""

import csv
import re
import shutil
from pathlib import Path

import pytest

from blockbench.cli import main
from blockbench.views import index

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results"


def test_published_index_is_current(tmp_path):
    """results/index.html and results/README.md are exactly what the generator makes of results/ now: regenerate
    with `blockbench leaderboard --index results/` after publishing anything (or changing a suite file)."""
    out, names = index.write_index(RESULTS, tmp_path)
    assert set(index.OUTPUT_FILES) <= set(names) and "cross_suite.png" in names
    assert "variants/sas_p.html" in names and "gpu-check/2026-12-04-h200/index.html" in names
    for name in names:  # the landing page, the cross-suite figure, every variant page and the GPU check's page
        assert (out / name).read_bytes() == (RESULTS / name).read_bytes(), f"results/{name} is stale"
    published = {f"variants/{p.name}" for p in (RESULTS / "variants").iterdir()}
    assert published == {n for n in names if n.startswith("variants/")}, "a variant page nothing writes any more"


def test_index_reaches_every_leaderboard_and_report_in_one_click():
    html = (RESULTS / "index.html").read_text()
    hrefs = set(re.findall(r'href="([^"#]+)"', html))
    for target in hrefs:
        assert (RESULTS / target).exists(), f"results/index.html links a missing {target}"
    pages = [p for p in RESULTS.glob("*/[0-9]*/index.html")] + [p for p in RESULTS.glob("*/[0-9]*/REPORT.html")]
    assert pages
    for p in pages:
        assert p.relative_to(RESULTS).as_posix() in hrefs, f"{p} is not linked from results/index.html"
    assert 'href="#how-to-read-this"' in html.split("<h2")[0] and '<h2 id="how-to-read-this">' in html


def test_index_states_each_ranking_as_its_leaderboard_does():
    """The one-line ranking of each result is the leaderboard's own: its tied ranks and stability word (read back
    from the published leaderboard.csv, not recomputed)."""
    lines = (RESULTS / "README.md").read_text().splitlines()
    for table in RESULTS.glob("*/[0-9]*/leaderboard.csv"):
        key = table.parent.relative_to(RESULTS).as_posix()
        [line] = [line for line in lines if line.startswith(f"| `{key}` |") and "[leaderboard]" in line]
        rows = [r for r in csv.DictReader(table.open()) if r["status"] == "ok"]
        groups: dict[str, list[str]] = {}
        for r in rows:
            groups.setdefault(r["rank_range"], []).append(r["variant"])
        ranking = " · ".join(f"{ranks} {', '.join(names)}" for ranks, names in groups.items())
        assert ranking in line and f"(**{rows[0]['ranking']}**)" in line, key


def test_every_published_directory_says_what_it_is_and_how_it_was_made():
    provenance = index.load_provenance(RESULTS)
    suites, ladders, others = index.scan(RESULTS)
    dirs = [p for versions in suites.values() for p in versions] + ladders + others
    for d in dirs:
        entry = provenance.get(d.relative_to(RESULTS).as_posix(), {})
        assert entry.get("what") and entry.get("how"), f"{d}: no entry in results/{index.PROVENANCE}"


def _results_tree(tmp_path: Path) -> Path:
    """Two versions of smoke (copies of the published v1 records), a sweep-like directory and a provenance file."""
    root = tmp_path / "results"
    for version in ("1", "2"):
        shutil.copytree(RESULTS / "smoke" / "1" / "records", root / "smoke" / version / "records")
    (root / "smoke" / "sweep" / "lr=0.1").mkdir(parents=True)
    (root / "smoke" / "sweep" / "sweep.toml").write_text("")
    (root / index.PROVENANCE).write_text('notes = ["A **note**."]\n\n["smoke/2"]\nwhat = "the second"\n'
                                         'how = "`blockbench run`"\n')
    return root


def test_the_landing_page_opens_with_the_flagship_result_and_a_page_per_variant(tmp_path):
    root = _results_tree(tmp_path)
    (root / index.PROVENANCE).write_text('flagship = ["smoke"]\n')
    _, names = index.write_index(root)
    md = (root / "README.md").read_text()
    # The first paragraph is the flagship's headline; the current results come before every other section.
    first = md.split("\n\n")[1]
    assert first.startswith("**smoke/2**: ") and "(baseline)" in first and "2 seeds x 60 steps" in first
    assert md.index("## Current results") < md.index("## Across suites") < md.index("## Every published version")
    assert "variants/pre_ln.html" in names and "cross_suite.png" in names
    variant = (root / "variants" / "sas_p.md").read_text()
    assert variant.startswith("# Variant: sas_p\n") and "[smoke/2](../smoke/2/index.html)" in variant
    assert "| `value` | identity |" in variant  # its recipe, from the zoo
    (root / index.PROVENANCE).write_text('flagship = ["nope"]\n')
    with pytest.raises(index.LeaderboardError, match="flagship nope"):
        index.write_index(root)


def test_index_of_a_results_tree(tmp_path, capsys):
    root = _results_tree(tmp_path)
    assert main(["leaderboard", "--index", str(root)]) == 0
    assert "results index written" in capsys.readouterr().out
    md = (root / "README.md").read_text()
    [v2] = [line for line in md.splitlines() if line.startswith("| `smoke/2` | **current**")]
    [v1] = [line for line in md.splitlines() if line.startswith("| `smoke/1` | superseded by v2")]
    assert md.index(v2) < md.index(v1)  # the current version first
    assert "| `smoke/2` | the second | `blockbench run` |" in md and "| `smoke/1` | - | - |" in md
    assert "[sweep.toml](smoke/sweep/sweep.toml); 1 directories: `lr=0.1/`" in md and "A **note**." in md
    assert '<h2 id="how-to-read-this">How to read this</h2>' in (root / "index.html").read_text()
    # The same files give the same bytes.
    before = {n: (root / n).read_bytes() for n in index.OUTPUT_FILES}
    index.write_index(root)
    assert {n: (root / n).read_bytes() for n in index.OUTPUT_FILES} == before


@pytest.mark.parametrize("args, needle", [
    (["leaderboard", "smoke", "--index", "RESULTS"], "give no SUITE_OR_DIR"),
    (["leaderboard", "--index", "RESULTS/nowhere"], "no such directory"),
])
def test_bad_index_input_exits_2_with_one_line(tmp_path, capsys, args, needle):
    root = _results_tree(tmp_path)
    assert main([a.replace("RESULTS", str(root)) for a in args]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_a_provenance_entry_without_its_directory_is_an_error(tmp_path, capsys):
    root = _results_tree(tmp_path)
    with (root / index.PROVENANCE).open("a") as f:
        f.write('\n["smoke/9"]\nwhat = "gone"\nhow = "-"\n')
    assert main(["leaderboard", "--index", str(root)]) == 2
    assert "smoke/9" in capsys.readouterr().err


def test_the_readme_results_table_is_the_published_headlines():
    """README.md's results table copies the landing page's current results: every cell of it must still be there."""
    readme = (REPO / "README.md").read_text()
    landing = (RESULTS / "README.md").read_text().splitlines()
    rows = [line for line in readme.splitlines() if re.match(r"^\| \[[a-z0-9-]+/\d+\]\(results/", line)]
    assert rows, "README.md has no results table"
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        key = re.match(r"\[([^\]]+)\]", cells[0]).group(1)
        [line] = [x for x in landing if x.startswith(f"| [{key}]({key}/index.html)")]
        for cell in cells[1:]:
            assert cell in line, f"README.md's {key} row is stale: {cell!r} is not in results/README.md"
