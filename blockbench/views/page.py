"""One page, two renderings: the views build a `Page` once and write it as Markdown and as HTML.

Writing the text once is what keeps leaderboard.md and index.html saying the same thing: the same headings, the
same reading guide, the same captions and caveats. Text is a small Markdown subset (`**bold**`, `` `code` ``,
`[label](href)`) that reads as-is in the Markdown file and is converted for the HTML one.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

LEFT, RIGHT = "left", "right"


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


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


@dataclass(frozen=True)
class Figure:
    src: str
    caption: str  # may be empty: a figure the text around it explains
    alt: str = ""  # the image's alt text; the file name when empty


Block = Heading | Para | Bullets | Table | Figure


@dataclass
class Page:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Page:
        self.blocks.extend(blocks)
        return self


def table(header: list[str], rows: list[list[str]], text_columns: frozenset[str] = frozenset()) -> Table:
    """A table whose columns named in `text_columns` are left-aligned and all others (numbers) right-aligned."""
    return Table(tuple(header), tuple(tuple(r) for r in rows),
                 tuple(LEFT if h in text_columns else RIGHT for h in header))


# ---------------------------------------------------------------------------------------------------------------
# Markdown

def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(page: Page) -> str:
    parts = [f"# {page.title}", ""]
    for block in page.blocks:
        if isinstance(block, Heading):
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
    return "\n".join(parts).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------------------------
# HTML

_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\*([^*\s][^*]*?)\*|\[([^\]]+)\]\(([^)\s]+)\)")


def inline_html(text: str) -> str:
    """The Markdown subset of `text` as escaped HTML."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()], quote=False))
        code, bold, italic, label, href = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code, quote=False)}</code>")
        elif bold is not None:
            out.append(f"<strong>{inline_html(bold)}</strong>")
        elif italic is not None:
            out.append(f"<em>{inline_html(italic)}</em>")
        else:
            out.append(f'<a href="{html.escape(href)}">{inline_html(label)}</a>')
        pos = m.end()
    out.append(html.escape(text[pos:], quote=False))
    return "".join(out)


STYLE = """\
body { font-family: sans-serif; margin: 2em; max-width: 110em; line-height: 1.4; }
p, ul { max-width: 80em; }
table { border-collapse: collapse; margin-bottom: 1em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; vertical-align: top; }
th { background: #f3f3f3; }
.left { text-align: left; }
.right { text-align: right; white-space: nowrap; }
th.right { white-space: normal; }
figure { margin: 1em 0 2em 0; }
figcaption { max-width: 80em; font-size: 0.9em; }
img { max-width: 100%; }
.caveat { border-left: 4px solid #d08000; padding-left: 0.6em; }
code { background: #f3f3f3; }
"""


def anchor(heading: str) -> str:
    """The id a heading gets, as GitHub makes it for Markdown (`How to read this` -> `how-to-read-this`), so one
    `[label](#id)` link works in both renderings."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def to_html(page: Page) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{html.escape(page.title)}</title>", f"<style>\n{STYLE}</style>", "</head>", "<body>",
             f"<h1>{inline_html(page.title)}</h1>"]
    for block in page.blocks:
        if isinstance(block, Heading):
            parts.append(f'<h{block.level} id="{anchor(block.text)}">{inline_html(block.text)}</h{block.level}>')
        elif isinstance(block, Para):
            css = f' class="{block.css}"' if block.css else ""
            parts.append(f"<p{css}>{inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>\n" + "\n".join(f"<li>{inline_html(i)}</li>" for i in block.items) + "\n</ul>")
        elif isinstance(block, Table):
            head = "".join(f'<th class="{a}">{inline_html(h)}</th>' for h, a in zip(block.header, block.align))
            body = "".join("<tr>" + "".join(f'<td class="{a}">{inline_html(c)}</td>'
                                            for c, a in zip(row, block.align)) + "</tr>\n" for row in block.rows)
            parts.append(f"<table>\n<tr>{head}</tr>\n{body}</table>")
        elif isinstance(block, Figure):
            src, alt = html.escape(block.src), html.escape(block.alt or block.src)
            caption = (f"<figcaption><code>{src}</code>: {inline_html(block.caption)}</figcaption>"
                       if block.caption else "")
            parts.append(f'<figure><img src="{src}" alt="{alt}">{caption}</figure>')
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
