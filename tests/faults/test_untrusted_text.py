"""Fault injection, part four (issue 32): text a stranger wrote, in every output blockbench makes of it.

Records, results folders and user blocks are received from others. Their text (a device name, provenance.toml, a
directory's name, a variant's name, a block's docstring) is data in every output: no link the page did not make,
no script, no spreadsheet formula, no mathtext, no rich markup, no terminal escape. Like test_faults.py, each test
is one row of docs/reliability.md's reliability table (tests/faults/table.py).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from blockbench.cli import main
from blockbench.records import seal
from tests.faults.table import fault

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "results" / "smoke" / "1"
JS = "[x](javascript:alert(1))"
BLOCK = "tests.faults.untrusted_blocks:markup_block"


def forge(dest: Path, edit) -> Path:
    """A results dir of the published smoke/1 records, each changed by `edit` and sealed again (a forger can
    recompute the integrity digest: it proves a record unedited since sealing, not who sealed it)."""
    (dest / "records").mkdir(parents=True)
    for path in sorted((SMOKE / "records").glob("*.json")):
        record = json.loads(path.read_text())
        edit(record)
        (dest / "records" / path.name).write_text(json.dumps(seal(record)))
    return dest


def device(name: str):
    def edit(record: dict) -> None:
        record["env"]["device_name"] = name
    return edit


class Tags(HTMLParser):
    """The tags and attributes a browser would build from a page (text that only looks like a tag is none)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


def links(html: str) -> list[str]:
    return [a[k] or "" for _, a in tags(html) for k in ("href", "src") if k in a]


def assert_safe_html(html: str) -> None:
    """No script, no event-handler attribute, and every link relative, an #anchor or http(s)."""
    for tag, attrs in tags(html):
        assert tag not in ("script", "iframe", "object", "embed"), tag
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
    for url in links(html):
        scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", url)
        assert scheme is None or scheme.group(1).lower() in ("http", "https"), url


@fault("a record whose env.device_name is a Markdown link to `javascript:`", 0,
       "(none: the leaderboard is written)",
       "index.html shows the text as written, no javascript: link; leaderboard.md has it escaped (`\\[x\\](...)`)")
def test_javascript_link_in_a_device_name(tmp_path, capsys):
    out = forge(tmp_path / "js", device(JS))
    assert main(["leaderboard", str(out)]) == 0
    html = (out / "index.html").read_text()
    assert_safe_html(html)
    assert "[x](javascript:alert(1))" in html  # shown, as text
    assert "\\[x\\](javascript:alert(1))" in (out / "leaderboard.md").read_text()


@fault("results/provenance.toml with `javascript:` links and `<script>`/`<img onerror>` in notes, what and how", 0,
       "(none: results/index.html and README.md are written)",
       "both pages show that text as written: no javascript: link, no script, no event handler")
def test_javascript_and_html_in_provenance(tmp_path, capsys):
    root = tmp_path / "results"
    shutil.copytree(SMOKE, root / "smoke" / "1")
    (root / "provenance.toml").write_text(
        f'notes = ["see {JS} <script>alert(2)</script>", "[r]: javascript:alert(6)"]\n'
        f'["smoke/1"]\nwhat = "[y](javascript:alert(3)) and [fine](smoke/1/index.html)"\n'
        'how = "<img src=x onerror=alert(4)>"\n')
    assert main(["leaderboard", "--index", str(root)]) == 0
    html, md = (root / "index.html").read_text(), (root / "README.md").read_text()
    assert_safe_html(html)
    assert "smoke/1/index.html" in links(html)  # an allowed link stays one
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(4)&gt;" in html
    assert "\\[y\\](javascript:alert(3))" in md and "\\<script\\>" in md and "\\[r\\]: javascript" in md


@fault("a results directory named `[z](javascript:alert(5))`", 0, "(none: the index is written)",
       "its row names it as code; its files' links are relative, percent-encoded (`smoke/%5Bz%5D%28...`)")
def test_javascript_link_in_a_directory_name(tmp_path, capsys):
    root = tmp_path / "results"
    shutil.copytree(SMOKE, root / "smoke" / "1")
    odd = root / "smoke" / "[z](javascript:alert(5))"
    odd.mkdir()
    (odd / "notes.txt").write_text("x")
    assert main(["leaderboard", "--index", str(root)]) == 0
    html = (root / "index.html").read_text()
    assert_safe_html(html)
    assert "smoke/%5Bz%5D%28javascript%3Aalert%285%29%29/notes.txt" in links(html)
    assert "<code>smoke/[z](javascript:alert(5))</code>" in html


@fault("a device name holding a newline, `|`, a `# heading` and `<img onerror>`", 0, "(none)",
       "leaderboard.md's setup table keeps its two columns on one line each; no heading, no tag in either page")
def test_newline_pipe_and_html_in_a_device_name(tmp_path, capsys):
    out = forge(tmp_path / "nl", device("a|b\n# H\n<img src=x onerror=alert(1)>"))
    assert main(["leaderboard", str(out)]) == 0
    md = (out / "leaderboard.md").read_text()
    assert not [line for line in md.splitlines() if line.startswith("# H") or line.startswith("<img")]
    [row] = [line for line in md.splitlines() if line.startswith("| device |")]
    assert row == "| device | a\\|b \\# H \\<img src=x onerror=alert(1)\\> (cpu, 2 threads) |"
    html = (out / "index.html").read_text()
    assert_safe_html(html)
    # the three plots of a CPU run (its seconds plots are left out: runs one after another on a shared CPU)
    assert [t for t, _ in tags(html)].count("img") == 3


@fault("a device name `=HYPERLINK(...)` and a variant named `-2+3` (a formula to a spreadsheet program)", 0,
       "(none)", "leaderboard.csv has `'=HYPERLINK(...)` and `'-2+3`; negative numbers stay numbers")
def test_formula_in_csv_text_cells(tmp_path, capsys):
    def edit(record: dict) -> None:
        record["env"]["device_name"] = '=HYPERLINK("http://x","y")'
        if record["variant"] == "sas":
            record["variant"] = "-2+3"
    out = forge(tmp_path / "eq", edit)
    assert main(["leaderboard", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    assert {r["device"] for r in rows} == {"'=HYPERLINK(\"http://x\",\"y\")"}
    assert "'-2+3" in {r["variant"] for r in rows}
    taus = {float(r["tau_50_final"]) for r in rows if r["tau_50_final"]}
    assert taus and all(isinstance(t, float) for t in taus)  # numbers, never apostrophe-prefixed text


@fault("a device name with rich markup (`[/x] [bold]`) and terminal escapes, through `compare`", 0,
       "(the comparison, the name printed as written, no ESC byte)", "nothing")
def test_markup_and_escapes_in_compare(tmp_path, capsys):
    out = forge(tmp_path / "markup", device("cpu [/x] [bold]\x1b[2J\x1b]0;pwned\x07"))
    assert main(["compare", str(out), str(out)]) == 0
    printed = capsys.readouterr()
    assert "cpu [/x] [bold][2J]0;pwned" in printed.out
    assert "\x1b" not in printed.out + printed.err and "\x07" not in printed.out


@fault("a record file named with terminal escapes (`evil\\x1b[2J.json`), not valid JSON", 2,
       "blockbench: error: .../evil[2J.json: ... (no ESC byte)", "nothing written")
def test_escape_bytes_in_a_file_name_never_reach_the_terminal(tmp_path, capsys):
    out = forge(tmp_path / "esc", lambda record: None)
    (out / "records" / "evil\x1b[2J.json").write_text("{not json")
    before = sorted(p.name for p in out.iterdir())
    assert main(["leaderboard", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evil[2J.json" in err and "\x1b" not in err
    assert sorted(p.name for p in out.iterdir()) == before


@fault("a variant name with `$...$` (mathtext), `[/x]` or a newline reaching the plots and pages", 0,
       "(none: defence behind the name check, which refuses such a record on load)",
       "plots drawn with the name as written; no markup in the pages")
def test_hostile_variant_names_in_the_views(tmp_path):
    from blockbench.records import load_records
    from blockbench.views import leaderboard

    names = {"sas": "$x^$ $\\nope$ [/x]", "sas_p": "a\nb <b onclick=x> _y_"}  # mathtext raises on both
    records = load_records(SMOKE / "records")
    for r in records:
        r["variant"] = names.get(r["variant"], r["variant"])
    files = leaderboard.build([(Path(f"{r['variant']}-{r['seed']}.json"), r) for r in records], [])
    for name in ("loss_vs_steps.png", "params.png", "loss_vs_flops.png"):
        assert files[name].startswith(b"\x89PNG")
    assert_safe_html(files["index.html"].decode())
    md = files["leaderboard.md"].decode()
    assert "| a b \\<b onclick=x\\> \\_y\\_ |" in md and "\\$" not in md


@fault("a user block whose docstring holds rich markup (`[/x]`, `[link=javascript:...]`) and ESC bytes", 0,
       "(`list` and `show` print the docstring as written, no ESC byte)", "nothing")
def test_markup_in_a_user_block_docstring(capsys):
    for args in (["list"], ["show", "markup_block"]):
        assert main(["--block", BLOCK, *args]) == 0, args
        out = capsys.readouterr().out
        assert "[/x]" in out and "\x1b" not in out and "\x07" not in out
    assert main(["--block", BLOCK, "list", "--json"]) == 0
    assert "[bold red]loud[/bold red]" in json.loads(capsys.readouterr().out)[-1]["description"]


@fault("records trained in another dtype (bf16 against fp32), through `compare`", 0,
       "(the speed rows say: speed ratios measured in different dtypes (bf16, fp32) are not compared)",
       "nothing")
def test_compare_refuses_speed_across_dtypes(tmp_path, capsys):
    def edit(record: dict) -> None:
        record["config"]["dtype"] = "bf16"
        if record["variant"] == "sas_p":
            record["speed"]["speedup_vs_baseline"] = 2.0  # far faster: a verdict if it were compared
    out = forge(tmp_path / "bf16", edit)
    assert main(["compare", "--json", str(SMOKE), str(out)]) == 0
    rows = [r for r in json.loads(capsys.readouterr().out)["rows"] if r["metric"].startswith("speedup vs")]
    judged = [r for r in rows if r["variant"] != "pre_ln"]
    assert judged and all(r["verdict"] == "n/a" for r in judged)
    assert all("different dtypes (bf16, fp32) are not compared" in r["detail"] for r in judged)


@pytest.mark.parametrize("text", ["[x](javascript:alert(1))", "<script>x</script>", "a\nb", "`", "|", "\x1b[2J"])
def test_untrusted_text_round_trips_in_the_html(text):
    """What a stranger wrote is shown as written (the page's text), just never as markup."""
    from blockbench.untrusted import md, plain
    from blockbench.views import page

    html = page.inline_html(md(text))
    assert_safe_html(html)
    assert page.inline_text(md(text)) == plain(text)
