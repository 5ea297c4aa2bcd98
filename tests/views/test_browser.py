"""The published pages in a real browser (Chromium, driven by Playwright): the headline and the ranking are on the
first screen of a laptop, nothing widens the page on a 400 px phone, and every relative link and image resolves.

Runs in the normal test run (no marker); skips, saying why, where the `playwright` package or a `chromium`
executable is missing (.ci/run installs Debian's chromium when it can). Playwright's own browser download is not
used: the system Chromium is launched through `executable_path`. One browser serves the whole module.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from blockbench.views import page

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium or chromium-browser executable on PATH", allow_module_level=True)

RESULTS = Path(__file__).resolve().parents[2] / "results"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 400, "height": 800}

# The published pages, relative to results/, and whether each must show a ranking (an element with data-ranking).
PUBLISHED = {"index.html": False, "paper-cpu/2/index.html": True, "paper-cpu/2/REPORT.html": False,
             "gpu-check/2026-12-04-h200/index.html": False}

# Where an element starts on the page (not the viewport), in CSS px.
TOP = "el => el.getBoundingClientRect().top + window.scrollY"

# The elements that reach past the viewport's right edge, widest first: what makes a page scroll sideways. What is
# inside a div.scroll scrolls in its own box and is left out; the box itself is not.
OVERFLOWING = """() => {
  const width = document.documentElement.clientWidth;
  const found = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.closest('.scroll');
    if (box && box !== el) continue;
    const right = el.getBoundingClientRect().right;
    if (right > width + 0.5) {
      found.push({right: Math.round(right), tag: el.tagName.toLowerCase(), class: String(el.className),
                  id: el.id, text: (el.textContent || el.getAttribute('src') || '').trim().slice(0, 60)});
    }
  }
  found.sort((a, b) => b.right - a.right);
  return found.slice(0, 5);
}"""

LINKS = """() => [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))
  .concat([...document.querySelectorAll('img[src]')].map(i => i.getAttribute('src')))"""


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_page(browser):
    """open_page(path, viewport, **context options) -> a Playwright page showing the file; closed after the test."""
    opened = []

    def _open(path: Path, viewport: dict, **options):
        assert path.is_file(), f"{path} does not exist"
        tab = browser.new_page(viewport=viewport, **options)
        opened.append(tab)
        tab.goto(path.as_uri())
        return tab

    yield _open
    for tab in opened:
        tab.close()


def first_screen_problems(tab, needs_ranking: bool) -> list[str]:
    """What of (a) fails: the first .headline, and the first [data-ranking] element where the page has one, must
    start within the first 800 px."""
    problems = []
    for selector, required in ((".headline", True), ("[data-ranking]", needs_ranking)):
        element = tab.query_selector(selector)
        if element is None:
            if required:
                problems.append(f"no {selector} element")
            continue
        top = element.evaluate(TOP)
        if top >= 800:
            problems.append(f"the first {selector} starts at {top:.0f} px")
    return problems


def assert_no_sideways_scroll(tab) -> None:
    """(b): with every <details> opened (a reader may open them), the document is no wider than the viewport."""
    tab.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
    width = tab.evaluate("document.documentElement.scrollWidth")
    viewport = tab.viewport_size["width"]
    assert width <= viewport, f"{width} px wide at {viewport} px; too wide: {tab.evaluate(OVERFLOWING)}"


def broken_links(tab, path: Path) -> list[str]:
    """(c): every relative href/src names an existing file (its #fragment stripped); a bare #id names an element
    on the page. http(s) links are not fetched."""
    broken = []
    for url in tab.evaluate(LINKS):
        parts = urlsplit(url)
        if parts.scheme in ("http", "https"):
            continue
        if parts.scheme or parts.netloc:
            broken.append(f"{url} (not a relative link)")
        elif not parts.path:
            if parts.fragment and tab.evaluate("id => document.getElementById(id) !== null",
                                               unquote(parts.fragment)) is False:
                broken.append(f"{url} (no element with that id)")
        elif not (path.parent / unquote(parts.path)).exists():
            broken.append(f"{url} (no such file)")
    return broken


# ---------------------------------------------------------------------------------------------------------------
# the published pages

@pytest.mark.parametrize("name", PUBLISHED)
def test_headline_and_ranking_are_on_the_first_screen(open_page, name):
    problems = first_screen_problems(open_page(RESULTS / name, LAPTOP), PUBLISHED[name])
    assert not problems, f"results/{name}: {problems}"


@pytest.mark.parametrize("name", PUBLISHED)
def test_no_sideways_scroll_on_a_phone(open_page, name):
    assert_no_sideways_scroll(open_page(RESULTS / name, PHONE))


@pytest.mark.parametrize("name", PUBLISHED)
def test_every_relative_link_and_image_resolves(open_page, name):
    path = RESULTS / name
    broken = broken_links(open_page(path, LAPTOP), path)
    assert not broken, f"results/{name}: {broken}"


# ---------------------------------------------------------------------------------------------------------------
# the page model's own CSS, on a page made to be hard to fit

def png(width: int, height: int) -> bytes:
    """A grey PNG of the given size (no plotting library needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


LONG = "sas_p-" + "x" * 200  # one word far wider than a phone


@pytest.fixture
def hard_page(tmp_path) -> Path:
    (tmp_path / "plot.png").write_bytes(png(1600, 300))
    header = [f"column number {i}" for i in range(20)]
    rows = [[f"`{LONG}`"] + [f"{1234567.891 * (i + j):.3f}" for j in range(19)] for i in range(5)]
    doc = page.Page(f"A title with {LONG}").add(
        page.Para(f"**{LONG}** is the headline; see [setup](#setup).", "headline"),
        page.Heading("Ranking", css="ranking"),
        page.table(header, rows, frozenset({header[0]}), css="ranking"),
        page.Para(f"A paragraph with {LONG} and `{LONG}` in code."),
        page.Bullets((f"an item with {LONG}", f"[{LONG}](plot.png)")),
        page.Figure("plot.png", f"a caption with {LONG}"),
        page.Details("Setup", (page.table(["item", "value"], [[LONG, LONG]], frozenset({"item", "value"})),
                               page.Para(LONG))),
    )
    path = tmp_path / "index.html"
    path.write_text(page.to_html(doc))
    return path


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_hard_page_fits_a_phone(open_page, hard_page, scheme):
    tab = open_page(hard_page, PHONE, color_scheme=scheme)
    assert_no_sideways_scroll(tab)
    # The wide table scrolls inside its own box instead.
    assert tab.evaluate("() => { const b = document.querySelector('.scroll'); return b.scrollWidth > b.clientWidth; }")
    assert tab.evaluate("() => document.querySelector('img').getBoundingClientRect().width") <= 400


def test_a_hard_page_on_a_laptop(open_page, hard_page):
    tab = open_page(hard_page, LAPTOP)
    assert not first_screen_problems(tab, True)
    assert not broken_links(tab, hard_page)
    assert tab.evaluate("() => document.querySelector('details#setup').open") is False  # collapsed
    assert tab.evaluate("document.documentElement.scrollWidth") <= 1280


def test_the_dark_theme_is_dark(open_page, hard_page):
    def background(scheme: str) -> str:
        return open_page(hard_page, PHONE, color_scheme=scheme).evaluate(
            "() => getComputedStyle(document.body).backgroundColor")

    assert background("dark") != background("light")
    assert background("dark") == "rgb(22, 24, 28)"
