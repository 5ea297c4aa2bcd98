"""The page model (blockbench/views/page.py): the Details block, the ranking mark, and the HTML that reads on any
screen (viewport meta, tables in their own scroll box). The real-browser checks are in tests/views/test_browser.py."""

from __future__ import annotations

import re

import pytest

from blockbench.views import page
from tests.faults.test_untrusted_text import assert_safe_html


def details_page() -> page.Page:
    return page.Page("A page").add(
        page.Para("**SAS-P wins** by 0.03 nats.", "headline"),
        page.Heading("Ranking", css="ranking"),
        page.table(["variant", "loss"], [["`sas_p`", "5.10"]], frozenset({"variant"}), css="ranking"),
        page.Details("Setup", (page.Para("How it ran, see [below](#how-to-read-this)."),
                               page.table(["item", "value"], [["device", "cpu"]], frozenset({"item", "value"})),
                               page.Heading("Inner", level=3))),
        page.Heading("How to read this"),
        page.Bullets(("one",)),
    )


def test_details_is_collapsed_in_html_with_its_id_and_its_blocks():
    html = page.to_html(details_page())
    [section] = re.findall(r'<details id="setup">.*?</details>', html, re.S)
    assert "<details id=\"setup\" open" not in html and " open" not in section.split("\n")[0]  # collapsed
    assert "<summary>Setup</summary>" in section
    assert '<td class="left">device</td><td class="left">cpu</td>' in section
    assert '<div class="scroll"><table>' in section and "</table></div>" in section
    assert '<h3 id="inner">Inner</h3>' in section
    assert '<a href="#how-to-read-this">below</a>' in section
    assert section.index("<summary>") < section.index("<table>")


def test_details_is_a_heading_and_its_blocks_in_markdown():
    markdown = page.to_markdown(details_page())
    assert ("## Setup\n\nHow it ran, see [below](#how-to-read-this).\n\n| item | value |\n|---|---|\n"
            "| device | cpu |\n\n### Inner\n\n## How to read this\n") in markdown
    assert "<details" not in markdown and "ranking" not in markdown.lower().replace("## ranking", "")


def test_a_script_in_a_details_summary_is_text():
    doc = page.Page("t").add(page.Details("<script>alert(1)</script> [x](javascript:alert(2))",
                                          (page.Para("<img src=x onerror=f()>"),)))
    html = page.to_html(doc)
    assert_safe_html(html)
    assert "<summary>&lt;script&gt;alert(1)&lt;/script&gt; [x](javascript:alert(2))</summary>" in html
    assert "&lt;img src=x onerror=f()&gt;" in html
    assert 'id="scriptalert1script-xjavascriptalert2"' in html  # an id made of word characters only


def test_details_holds_no_details():
    with pytest.raises(ValueError, match="another Details"):
        page.Details("outer", (page.Details("inner", ()),))
    assert page.Details("s", [page.Para("p")]).blocks == (page.Para("p"),)  # a list is kept as a tuple


def test_viewport_meta_and_every_table_in_a_scroll_box():
    html = page.to_html(details_page())
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert html.count("<table") == html.count('<div class="scroll"><table') == 2
    assert html.count("</table></div>") == 2
    assert "overflow-x: auto" in html and "@media (max-width: 600px)" in html
    assert "@media (prefers-color-scheme: dark)" in html and "overflow-wrap: anywhere" in html


def test_the_ranking_is_marked_in_html_only():
    html = page.to_html(details_page())
    assert '<h2 id="ranking" class="ranking" data-ranking>Ranking</h2>' in html
    assert '<div class="scroll"><table class="ranking" data-ranking>' in html
    assert '<h2 id="how-to-read-this">' in html  # no css, no attribute
    assert '<p class="headline"><strong>SAS-P wins</strong> by 0.03 nats.</p>' in html
    plain = page.Page("A page").add(page.Para("**SAS-P wins** by 0.03 nats."), page.Heading("Ranking"),
                                    page.table(["variant", "loss"], [["`sas_p`", "5.10"]], frozenset({"variant"})))
    assert page.to_markdown(page.Page("A page", details_page().blocks[:3])) == page.to_markdown(plain)


def test_a_css_class_is_escaped():
    html = page.to_html(page.Page("t").add(page.Heading("h", css='x" onclick="f()'),
                                           page.Table(("a",), (("1",),), (page.LEFT,), css="<b>")))
    assert_safe_html(html)
    assert 'class="x&#34; onclick=&#34;f()"' in html and 'class="&lt;b&gt;"' in html
