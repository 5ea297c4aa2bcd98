"""Plain data a workload hands to the views (views/): its extra leaderboard columns and its report sections.

The views ask a workload for these (Workload.leaderboard_columns, Workload.report_sections) and render them; a
workload never imports a view. Nothing here imports anything of the package.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExtraColumn:
    """A leaderboard column of one workload: the mean over a variant's seeds of a run-record summary entry (when
    the variant has final losses), in the CSV as `name` right after the column `after`, and in the ranking table
    (Markdown and HTML) as `header`, formatted with `spec`. Left out where no run has a value."""

    name: str
    summary_key: str
    header: str
    spec: str
    after: str


@dataclass(frozen=True)
class ReportSection:
    """A section of REPORT.md/.html: a heading, a paragraph, then a table whose first `text_columns` columns are
    words (left-aligned) and the others numbers."""

    heading: str
    text: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    text_columns: int = 1
