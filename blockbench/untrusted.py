"""Text that came from outside blockbench, made safe for each place it is written to.

A record, a suite file, `results/provenance.toml`, a directory name and a user block's docstring may come from a
stranger: every text in them is data, never markup. Each output has its own dangerous characters, so each has its
own function here, and the views call the one for where the text goes:

- `plain`: the terminal and one-line messages: control characters (ESC starts a terminal escape sequence),
  bidirectional overrides (they reorder what a reader sees) and line breaks (a forged second line) removed;
- `md`: inside Markdown text: every character that could start a link, an image, emphasis, code or raw HTML
  is backslash-escaped, so `[x](javascript:...)` is shown as written, never made a link;
- `md_code`: a Markdown code span that no backtick in the text can close early;
- `csv`: a CSV text cell: one starting with `=`, `+`, `-`, `@` (a formula to a spreadsheet program) gets a
  leading apostrophe, as OWASP advises (numbers are never passed here: a negative number stays a number);
- `mpl`: a matplotlib label: `$` escaped, so a name with two dollar signs is not parsed as mathtext (which
  raises on most text that is not a formula);
- `rich`: a cell or line printed through rich: markup escaped, so `[bold]` or `[/x]` is shown, never parsed.

The published pages' own text is trusted; only what is interpolated into it goes through these.
"""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape

# C0 and C1 control characters and DEL (ESC, CSI, BEL...), and the Unicode bidirectional embeddings, overrides and
# isolates: all invisible, all able to change what a terminal or a reader shows.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Line breaks of every kind (a record's text is one line wherever it is shown).
_BREAKS = re.compile("[\t\n\x0b\x0c\r\x85\u2028\u2029]+")

# Markdown punctuation that can open or close an inline construct (CommonMark allows a backslash before any ASCII
# punctuation). `_` is escaped only where it can delimit emphasis (next to a non-alphanumeric character), so
# names like pre_ln read as written in the .md files; `|` is escaped per table cell by page.py.
_MD_SPECIAL = re.compile(r"[\\`*\[\]<>~&#]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def plain(text: Any) -> str:
    """`text` as one printable line: control characters and bidirectional overrides removed, line breaks and tabs
    made single spaces."""
    return _CONTROL.sub("", _BREAKS.sub(" ", str(text)))


def md(text: Any) -> str:
    """`text` as literal Markdown inline text (one line, every construct escaped). The views put it after some
    text of their own or in a table cell, never at the start of a line, so block syntax (`#`, `-`, `1.`) needs no
    escape."""
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), plain(text))


def md_code(text: Any) -> str:
    """`text` as a Markdown code span: fenced by more backticks than any run inside it, padded where it starts
    or ends with a backtick (CommonMark strips one space each side)."""
    body = plain(text)
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if body.startswith("`") or body.endswith("`") or (body.startswith(" ") and body.endswith(" ")) else ""
    return f"{fence}{pad}{body}{pad}{fence}"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv(text: str) -> str:
    """A CSV text cell that no spreadsheet program evaluates: a leading apostrophe before a formula's first
    character (the program hides it and shows the text)."""
    text = _CONTROL.sub("", text)
    return "'" + text if text.startswith(_FORMULA_START) else text


def mpl(text: Any) -> str:
    """A matplotlib label: one line, every `$` escaped (shown as a dollar sign, never parsed as mathtext)."""
    return plain(text).replace("$", r"\$")


def rich(text: Any) -> str:
    """A string for rich (a table cell, a title, a printed line): one line, markup escaped."""
    return escape(plain(text))
