"""One page, two renderings: the views build a `Page` once and write it as Markdown and as HTML.

Writing the text once is what keeps leaderboard.md and index.html saying the same thing: the same headings, the
same reading guide, the same captions and caveats. Text is Markdown (the views use `**bold**`, `*italic*`,
`` `code` `` and `[label](href)`) that reads as-is in the Markdown file and is converted for the HTML one.

The HTML is escaped by construction, not by care: Markdown goes through markdown-it-py (CommonMark, raw HTML off,
so a `<script>` in any text is shown as text) with links allowed only to relative paths, `#anchors` and http(s)
(`javascript:`, `data:`, `vbscript:` and every other scheme stay text), and the page is a Jinja2 template with
autoescape on, so nothing reaches the page unescaped except markdown-it's own output. Text from a record, a suite,
provenance.toml or a directory name is escaped by the views with blockbench.untrusted before it joins the page's
text, so the Markdown file shows it as written too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment
from markdown_it import MarkdownIt
from markupsafe import Markup

from blockbench.untrusted import md, plain

LEFT, RIGHT = "left", "right"


# `css` on a Heading or a Table is a class for the HTML page only; the class "ranking" marks a page's ranking (the
# heading or table a reader looks for first) and also gives the element a `data-ranking` attribute.
RANKING = "ranking"


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2
    css: str = ""


@dataclass(frozen=True)
class Para:
    text: str
    css: str = ""  # a class for the HTML page only (e.g. a caveat is styled as one)


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: tuple[str, ...]  # LEFT or RIGHT per column, the same in both renderings
    css: str = ""  # a class for the HTML page only (see RANKING)


@dataclass(frozen=True)
class Figure:
    src: str
    caption: str  # may be empty: a figure the text around it explains
    alt: str = ""  # the image's alt text; the file name when empty


@dataclass(frozen=True)
class Details:
    """A section the HTML page shows collapsed under its one-line `summary` (page Markdown, like a heading's text);
    the Markdown file, which cannot collapse, shows it as a level-2 heading followed by its blocks. Its blocks may
    be any block but another Details."""

    summary: str
    blocks: tuple[Block, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if any(isinstance(b, Details) for b in self.blocks):
            raise ValueError(f"a Details block holds another Details: {self.summary!r}")


Block = Heading | Para | Bullets | Table | Figure | Details


@dataclass
class Page:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Page:
        self.blocks.extend(blocks)
        return self


def table(header: list[str], rows: list[list[str]], text_columns: frozenset[str] = frozenset(),
          css: str = "") -> Table:
    """A table whose columns named in `text_columns` are left-aligned and all others (numbers) right-aligned."""
    return Table(tuple(header), tuple(tuple(r) for r in rows),
                 tuple(LEFT if h in text_columns else RIGHT for h in header), css)


# ---------------------------------------------------------------------------------------------------------------
# Markdown

def _md_cell(text: str) -> str:
    # A cell is one line, and a pipe in it is text, not the next column (GFM tables unescape `\|` themselves).
    return " ".join(text.splitlines()).replace("|", "\\|")


def _markdown_blocks(blocks: list[Block] | tuple[Block, ...]) -> list[str]:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Details):
            parts += [f"## {block.summary}", ""] + _markdown_blocks(block.blocks)
        elif isinstance(block, Heading):
            parts += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Para):
            parts += [block.text, ""]
        elif isinstance(block, Bullets):
            parts += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            parts.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
            parts.append("|" + "|".join("---:" if a == RIGHT else "---" for a in block.align) + "|")
            parts += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            parts.append("")
        elif isinstance(block, Figure):
            parts += [f"![{block.alt or block.src}]({block.src})", ""]
            if block.caption:
                parts += [f"*{block.src}:* {block.caption}", ""]
    return parts


def to_markdown(page: Page) -> str:
    parts = [f"# {page.title}", ""] + _markdown_blocks(page.blocks)
    return "\n".join(parts).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------------------------
# HTML

LINK_SCHEMES = frozenset({"http", "https"})


def link_allowed(url: str) -> bool:
    """Whether a page may link `url`: a relative path, an `#anchor`, or an http(s) address. Anything else
    (`javascript:`, `data:`, `file:`, a protocol-relative `//host`) is refused and its Markdown stays text."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. an unbalanced IPv6 bracket: not a link worth making
        return False
    if parts.scheme:
        return parts.scheme.lower() in LINK_SCHEMES and bool(parts.netloc)
    return not parts.netloc and not url.strip().startswith("//")


def _converter():
    class Converter(MarkdownIt):
        def validateLink(self, url: str) -> bool:  # noqa: N802 - markdown-it's name
            # markdown-it's own check (no javascript:, vbscript:, file:, most data:) and ours on top of it.
            return super().validateLink(url) and link_allowed(url)

    # CommonMark without raw HTML: every `<` in any text is escaped, never a tag.
    return Converter("commonmark", {"html": False})


@cache
def _md():
    return _converter()


@cache
def _permissive():
    """A parser that keeps every link and raw HTML as tokens, to inspect a stranger's Markdown before using it."""
    parser = MarkdownIt("commonmark", {"html": True})
    parser.validateLink = lambda url: True  # type: ignore[method-assign] - see everything, judge below
    return parser


def vetted_markdown(text: str) -> str:
    """Markdown that someone else wrote (results/provenance.toml), on one line: kept as Markdown when it is one
    paragraph of inline text without raw HTML whose every link is allowed (link_allowed); anything else (a
    `javascript:` link, a `<script>`, a heading, a link definition) is shown as written, escaped (untrusted.md),
    in the Markdown file as in the HTML one."""
    line = plain(text)
    if not line.strip():
        return line
    tokens = _permissive().parse(line)
    ok = [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"]
    for child in (tokens[1].children or []) if ok else []:
        url = child.attrGet("href") if child.type == "link_open" else child.attrGet("src")
        if child.type == "html_inline" or (url is not None and not _md().validateLink(str(url))):
            ok = False
    return line if ok else md(line)


def inline_html(text: str) -> str:
    """The Markdown of `text` as escaped HTML (inline: no paragraph around it)."""
    return _md().renderInline(text)


def inline_text(text: str) -> str:
    """The Markdown of `text` as plain text (what a `<title>` holds): code, emphasis and link labels unwrapped."""
    tokens = _md().parseInline(text)
    return "".join(t.content for tok in tokens for t in tok.children or [] if t.type in ("text", "code_inline"))


# Readable on any screen: nothing but a table's own box scrolls sideways (a wide table sits in a `div.scroll`),
# long words and code break where they must, images shrink to the page; a dark theme follows the reader's system.
STYLE = """\
body { font-family: sans-serif; margin: 2em; max-width: 110em; line-height: 1.4; }
p, ul { max-width: 80em; }
h1, h2, h3, h4, summary, p, li, figcaption, td.left { overflow-wrap: anywhere; }
.scroll { max-width: 100%; overflow-x: auto; margin-bottom: 1em; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; vertical-align: top; }
th { background: #f3f3f3; }
.left { text-align: left; }
.right { text-align: right; white-space: nowrap; }
th.right { white-space: normal; }
figure { margin: 1em 0 2em 0; }
figcaption { max-width: 80em; font-size: 0.9em; }
img { max-width: 100%; height: auto; box-sizing: border-box; }
.headline { font-size: 1.15em; border-left: 4px solid #2f6fd0; padding-left: 0.6em; }
.caveat { border-left: 4px solid #d08000; padding-left: 0.6em; }
code { background: #f3f3f3; overflow-wrap: anywhere; }
details { margin: 1em 0; }
summary { cursor: pointer; font-size: 1.5em; font-weight: bold; margin: 0.83em 0; }
@media (max-width: 600px) {
  body { margin: 0.6em; }
  td, th { padding: 0.2em 0.35em; }
}
@media (prefers-color-scheme: dark) {
  :root { color-scheme: dark; }
  body { background: #16181c; color: #e2e2e2; }
  td, th { border-color: #4a4d52; }
  th { background: #262a30; }
  code { background: #2a2e35; }
  a { color: #8cb8ff; }
  a:visited { color: #c8a2ff; }
  img { background: #ffffff; padding: 4px; border-radius: 3px; }
  .headline { border-left-color: #6a9cff; }
  .caveat { border-left-color: #e09a30; }
}
"""

# The page's skeleton. Autoescape is on: a value is escaped unless it is markdown-it's output (marked safe in
# `_context`), so no text can open a tag or an attribute. A Details block's inner blocks go through the same macro
# as the page's own.
TEMPLATE = """\
{% macro show(b) %}
{% if b.kind == "heading" %}
<h{{ b.level }} id="{{ b.id }}"{{ attrs(b) }}>{{ b.html }}</h{{ b.level }}>
{% elif b.kind == "para" %}
<p{% if b.css %} class="{{ b.css }}"{% endif %}>{{ b.html }}</p>
{% elif b.kind == "bullets" %}
<ul>
{% for item in b.entries %}
<li>{{ item }}</li>
{% endfor %}
</ul>
{% elif b.kind == "table" %}
<div class="scroll"><table{{ attrs(b) }}>
<tr>{% for cell, align in b.header %}<th class="{{ align }}">{{ cell }}</th>{% endfor %}</tr>
{% for row in b.rows %}
<tr>{% for cell, align in row %}<td class="{{ align }}">{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</table></div>
{% elif b.kind == "figure" %}
<figure><img src="{{ b.src }}" alt="{{ b.alt }}">{% if b.caption %}<figcaption><code>{{ b.src }}</code>: \
{{ b.caption }}</figcaption>{% endif %}</figure>
{% elif b.kind == "details" %}
<details id="{{ b.id }}">
<summary>{{ b.html }}</summary>
{% for inner in b.blocks %}
{{ show(inner) }}
{%- endfor %}
</details>
{% endif %}
{% endmacro %}
{% macro attrs(b) %}{% if b.css %} class="{{ b.css }}"{% endif %}{% if b.ranking %} data-ranking{% endif %}\
{% endmacro %}
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
{{ style }}</style>
</head>
<body>
<h1>{{ title_html }}</h1>
{% for b in blocks %}
{{ show(b) }}
{%- endfor %}
</body>
</html>
"""


@cache
def _template():

    # trim_blocks/lstrip_blocks: a tag alone on its line leaves no blank line, so the page reads as hand-written.
    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    return env.from_string(TEMPLATE)


def anchor(heading: str) -> str:
    """The id a heading gets, as GitHub makes it for Markdown (`How to read this` -> `how-to-read-this`), so one
    `[label](#id)` link works in both renderings."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _context(page: Page) -> dict[str, Any]:
    """What the template shows of each block; Markup marks markdown-it's (already escaped) HTML as safe."""
    def rendered(text: str) -> Markup:
        return Markup(inline_html(text))  # noqa: S704 - markdown-it escaped it, raw HTML off

    def shown(block: Block) -> dict[str, Any]:
        if isinstance(block, Details):
            return {"kind": "details", "id": anchor(block.summary), "html": rendered(block.summary),
                    "blocks": [shown(b) for b in block.blocks]}
        if isinstance(block, Heading):
            return {"kind": "heading", "level": block.level, "id": anchor(block.text), "html": rendered(block.text),
                    "css": block.css, "ranking": RANKING in block.css.split()}
        if isinstance(block, Para):
            return {"kind": "para", "css": block.css, "html": rendered(block.text)}
        if isinstance(block, Bullets):
            return {"kind": "bullets", "entries": [rendered(i) for i in block.items]}
        if isinstance(block, Table):
            return {"kind": "table", "header": list(zip([rendered(h) for h in block.header], block.align)),
                    "rows": [list(zip([rendered(c) for c in row], block.align)) for row in block.rows],
                    "css": block.css, "ranking": RANKING in block.css.split()}
        if isinstance(block, Figure):
            # A figure's file is named by the view; one that is no relative path is not shown at all.
            src = block.src if link_allowed(block.src) else ""
            return {"kind": "figure", "src": src, "alt": block.alt or src,
                    "caption": rendered(block.caption) if block.caption else ""}
        raise TypeError(f"not a page block: {block!r}")

    return {"title": inline_text(page.title), "title_html": rendered(page.title), "style": Markup(STYLE),
            "blocks": [shown(b) for b in page.blocks]}


def to_html(page: Page) -> str:
    return _template().render(_context(page))
