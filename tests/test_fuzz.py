"""Property-based tests (Hypothesis) of what blockbench reads from others and what it publishes (issue 32).

For arbitrary text in every text field of a run record, a suite file and results/provenance.toml, and for
arbitrary whole files: the only exception is the one-line refusal (a BlockbenchError), and no page made of what
was accepted holds a script, an event-handler attribute or a link outside relative paths, #anchors and http(s).

Bounded and seeded for CI: each test has a fixed example budget and `derandomize=True` (the same examples on
every run, no example database), so the file takes well under a minute on two cores.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from blockbench.errors import BlockbenchError
from blockbench.records import load_record, load_records, seal, validate_record
from blockbench.untrusted import md, md_code, plain
from blockbench.views import page
from tests.faults.test_untrusted_text import assert_safe_html
from tests.tiny_suite import TINY_SUITE

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "results" / "smoke" / "1"


def bounded(examples: int):
    """Seeded and bounded: the same `examples` inputs every run, no deadline (a shared CI machine's timing)."""
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# Any Unicode text a file can hold (no lone surrogates: they cannot be written as UTF-8), with the characters that
# matter here made likely: Markdown and HTML punctuation, link schemes, line breaks, ESC, rich markup.
HOSTILE = st.sampled_from(["[x](javascript:alert(1))", "<script>alert(1)</script>", "<img src=x onerror=f()>",
                           "\n# h\n", "|", "`", "=cmd()", "-1+2", "@x", "$x^$", "[/x]", "[bold]", "\x1b[2J", "\\",
                           "_a_", "**", "&lt;", "<javascript:x>", "[r]: data:text/html,x",
                           "![i](data:image/png;base64,AA)", "[f](ftp://x/y)", "[s](//evil.example)", "\u202e", "\r\n"])
TEXT = st.lists(st.one_of(st.text(st.characters(exclude_categories=("Cs",)), max_size=12), HOSTILE),
                max_size=4).map("".join)


# ---------------------------------------------------------------------------------------------------------------
# records

RECORD_TEXT_FIELDS = [("variant",), ("status",), ("stop_reason",), ("created_at",), ("blockbench_version",),
                      ("run_id",), ("env", "device_name"), ("env", "device"), ("env", "torch"),
                      ("env", "platform"), ("git", "commit"), ("suite", "name"), ("suite", "version"),
                      ("suite", "hash"), ("data", "corpus"), ("data", "tokenizer"), ("data", "fingerprint"),
                      ("config", "baseline"), ("config", "dtype"), ("summary", "peak_memory_kind")]


@pytest.fixture(scope="module")
def smoke_records() -> list[dict]:
    return load_records(SMOKE / "records")


def _set(record: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        record = record[key]
    record[path[-1]] = value


@bounded(300)
@given(field=st.sampled_from(RECORD_TEXT_FIELDS), text=TEXT, reseal=st.booleans())
def test_any_text_in_a_record_field_loads_or_is_refused_in_one_line(smoke_records, field, text, reseal):
    record = copy.deepcopy(smoke_records[0])
    _set(record, field, text)
    try:
        validate_record(seal(record) if reseal else record, "fuzz.json")
    except BlockbenchError as exc:
        assert plain(str(exc)).strip()  # a message, which the CLI prints as one line


@bounded(60)
@given(data=st.one_of(st.binary(max_size=300), TEXT.map(str.encode),
                      st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
                                   lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                                   max_leaves=12).map(lambda v: json.dumps(v).encode())))
def test_any_file_named_like_a_record_loads_or_is_refused(tmp_path, data):
    path = tmp_path / "pre_ln-seed0.json"
    path.write_bytes(data)
    with pytest.raises(BlockbenchError):
        load_record(path)  # nothing arbitrary is a valid sealed record


@bounded(100)
@given(field=st.sampled_from([("variant",), ("env", "device_name"), ("env", "torch"), ("git", "commit"),
                              ("data", "corpus"), ("data", "tokenizer"), ("config", "dtype"),
                              ("stop_reason",)]), text=TEXT)
def test_a_leaderboard_of_hostile_records_has_no_script_and_no_foreign_link(smoke_records, field, text):
    """The views behind the loader: whatever text reaches them (the loader refuses bad names; device names and
    the rest are free text), the page shows it and makes nothing of it."""
    from blockbench.views import leaderboard
    from blockbench.views.selection import ranked_table

    records = copy.deepcopy(smoke_records)
    for r in records:
        if field != ("variant",) or r["variant"] == "sas":
            _set(r, field, text)
    try:
        table, st_ = ranked_table(records)
        doc = leaderboard.build_page(table, records, [("records/x.json", text)], 0, st_.line())
    except BlockbenchError:
        event("refused")
        return
    assert_safe_html(page.to_html(doc))
    markdown = page.to_markdown(doc)
    assert "](javascript:" not in markdown.replace("\\]", "")  # every record text's link is escaped
    assert_tables_keep_their_shape(markdown)


def assert_tables_keep_their_shape(markdown: str) -> None:
    """Every row of every Markdown table has its header's number of cells: no text added a column or a row."""
    width = None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            width = None
            continue
        cells = len(re.findall(r"(?<!\\)\|", line))
        width = cells if width is None else width
        assert cells == width, line


# ---------------------------------------------------------------------------------------------------------------
# suites

SUITE_TEXT_FIELDS = [('name = "tiny"', "name"), ('version = "1"', "version"), ('baseline = "pre_ln"', "baseline"),
                     ('corpus = "sympy"', "corpus"), ('tokenizer = "bytes"', "tokenizer"),
                     ("[variants.sas_p]", "variant")]


def _toml_string(text: str) -> str:
    # JSON's escapes are TOML's for a basic string (non-ASCII kept as is, controls as \\uXXXX).
    return json.dumps(text, ensure_ascii=False)


@bounded(300)
@given(field=st.sampled_from(SUITE_TEXT_FIELDS), text=TEXT)
def test_any_text_in_a_suite_field_loads_or_is_refused_in_one_line(tmp_path, field, text):
    from blockbench.suite import load_suite

    line, key = field
    new = f"[variants.{_toml_string(text)}]" if key == "variant" else f"{key} = {_toml_string(text)}"
    path = tmp_path / "fuzz.toml"
    path.write_text(TINY_SUITE.replace(line, new, 1), encoding="utf-8")
    try:
        load_suite(str(path))
    except BlockbenchError as exc:
        assert str(exc).strip()


@bounded(80)
@given(text=st.one_of(TEXT, st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_any_suite_file_loads_or_is_refused(tmp_path, text):
    from blockbench.suite import load_suite

    path = tmp_path / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BlockbenchError):
        load_suite(str(path))  # nothing this short is a whole suite


# ---------------------------------------------------------------------------------------------------------------
# provenance.toml and the results index

@pytest.fixture(scope="module")
def results_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-results")
    shutil.copytree(SMOKE, root / "smoke" / "1")
    return root


PROVENANCE_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | TEXT,
                                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                                 max_leaves=8)


@bounded(100)
@given(data=st.one_of(st.dictionaries(st.sampled_from(["notes", "smoke/1", "x"]) | TEXT, PROVENANCE_VALUES,
                                      max_size=3),
                      st.fixed_dictionaries({"notes": st.lists(TEXT, max_size=3),
                                             "smoke/1": st.fixed_dictionaries({"what": TEXT, "how": TEXT})})),
       raw=st.one_of(st.none(), TEXT))
def test_any_provenance_loads_or_is_refused_in_one_line(results_root, data, raw):
    from blockbench.views.index import load_provenance

    text = raw if raw is not None else _to_toml(data)
    if text is None:
        return
    (results_root / "provenance.toml").write_text(text, encoding="utf-8")
    try:
        loaded = load_provenance(results_root)
    except BlockbenchError as exc:
        assert str(exc).strip()
        return
    assert isinstance(loaded, dict)


@bounded(100)
@given(notes=st.lists(TEXT, max_size=2), what=TEXT, how=TEXT)
def test_an_index_of_hostile_provenance_has_no_script_and_no_foreign_link(results_root, notes, what, how):
    from blockbench.views.index import build_index

    text = _to_toml({"notes": notes, "smoke/1": {"what": what, "how": how}})
    (results_root / "provenance.toml").write_text(text, encoding="utf-8")
    doc = build_index(results_root)
    assert_safe_html(page.to_html(doc))
    assert "](javascript:" not in page.to_markdown(doc).replace("\\]", "")


def _to_toml(data) -> str | None:
    """`data` as TOML text, keys and strings quoted JSON-style; None for what TOML cannot hold (a None, a list
    at the top)."""
    def value(v) -> str | None:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            return _toml_string(v)
        if isinstance(v, list):
            items = [value(x) for x in v]
            return None if None in items else "[" + ", ".join(items) + "]"  # type: ignore[arg-type]
        if isinstance(v, dict):
            items = [(_toml_string(k), value(x)) for k, x in v.items()]
            return None if any(x is None for _, x in items) else "{" + ", ".join(f"{k} = {x}" for k, x in items) + "}"
        return None

    if not isinstance(data, dict):
        return None
    lines = [(_toml_string(k), value(v)) for k, v in data.items()]
    return None if any(v is None for _, v in lines) else "".join(f"{k} = {v}\n" for k, v in lines)


# ---------------------------------------------------------------------------------------------------------------
# the pages themselves

@bounded(500)
@given(texts=st.lists(TEXT, min_size=5, max_size=5), escape=st.booleans())
def test_no_page_holds_a_script_or_a_foreign_link_whatever_its_text(texts, escape):
    """Escaped or not (a view that forgot untrusted.md), no text makes a script, a handler or a foreign link:
    markdown-it renders no raw HTML and links only what link_allowed allows; Jinja2 escapes everything else."""
    a, b, c, d, e = [md(t) for t in texts] if escape else texts
    doc = page.Page(a).add(page.Heading(b), page.Para(c, "caveat"), page.Bullets((d, page.vetted_markdown(e))),
                           page.table([a, b], [[c, md_code(d)], [e, a]], frozenset({a})), page.Figure(e, c, alt=d))
    html = page.to_html(doc)
    assert_safe_html(html)
    assert page.to_html(doc) == html  # byte-stable
    markdown = page.to_markdown(doc)
    assert_tables_keep_their_shape(markdown)
    if escape:  # escaped text is shown as written and never opens a link in the Markdown either
        assert "](javascript:" not in markdown.replace("\\]", "")
        assert page.inline_text(md(texts[2])) == plain(texts[2])
