"""Plain data a workload hands to the rest of the package: the metrics it declares and its report sections.

Records validate a run's summary against a workload's `Metric`s, the leaderboard builds a column from each and the
progress display shows each; the views render a workload's `ReportSection`s. A workload never imports a view, and
nothing here imports anything of the package.
"""

from __future__ import annotations

from dataclasses import dataclass

# How a metric's per-seed values become a variant's one number (views/columns.py implements each).
AGGREGATES = ("mean",)


@dataclass(frozen=True)
class Metric:
    """One metric a workload reports. The run record's summary carries it under `key` (of type `kind`; None
    allowed where `optional`, as for a run that did not end ok); the leaderboard's CSV lists `aggregate` over a
    variant's seeds as `column`, right after the CSV column `after` (left out where no run has a value unless
    `always_listed`), and the ranking table (Markdown and HTML) as `header` formatted with `spec` (no header: CSV
    only); the progress display's summary table shows it as `label`, formatted with `label_spec`."""

    key: str
    kind: type
    optional: bool
    unit: str
    meaning: str
    column: str
    after: str
    label: str
    label_spec: str = ".3f"
    header: str = ""
    spec: str = ".3f"
    always_listed: bool = False
    aggregate: str = "mean"

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"metric {self.key}: aggregate {self.aggregate!r} is not one of {', '.join(AGGREGATES)}")

    @property
    def types(self) -> tuple[type, ...]:
        """The JSON types a record's value may have (an int is a float's value too; None where optional)."""
        kinds = (int, float) if self.kind is float else (self.kind,)
        return kinds + ((type(None),) if self.optional else ())


@dataclass(frozen=True)
class ReportSection:
    """A section of REPORT.md/.html: a heading, a paragraph, then a table whose first `text_columns` columns are
    words (left-aligned) and the others numbers."""

    heading: str
    text: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    text_columns: int = 1
