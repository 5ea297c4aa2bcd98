"""`blockbench compare` on published pairs gives, byte for byte, what it gave before the views/ refactor (issue 25).

The expected outputs under tests/data/compare/ were written by `python -m blockbench compare [--json] BASE CAND`
at the commit before the refactor, from the repository root (paths in the JSON are as given on the command line).
"""

from pathlib import Path

import pytest

from blockbench.cli import main

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "compare"

PAIRS = {  # fixture name -> (baseline, candidate, exit code), both under results/
    "smoke-1-self": ("smoke/1", "smoke/1", 0),
    "default-1-self": ("default/1", "default/1", 0),
    "default-2-self": ("default/2", "default/2", 0),
    "paper-cpu-1-self": ("paper-cpu/1", "paper-cpu/1", 0),
    "paper-cpu-2-self": ("paper-cpu/2", "paper-cpu/2", 0),
    "mlm-smoke-1-self": ("mlm-smoke/1", "mlm-smoke/1", 0),
    "paper-bert-cpu-1-self": ("paper-bert-cpu/1", "paper-bert-cpu/1", 0),
    "paper-cpu-1-post_ln-seed0-vs-seed1": ("paper-cpu/1/records/post_ln-seed0.json",
                                           "paper-cpu/1/records/post_ln-seed1.json", 0),
    "paper-cpu-1-sas-seed0-vs-seed2": ("paper-cpu/1/records/sas-seed0.json",
                                       "paper-cpu/1/records/sas-seed2.json", 1),
    "paper-bert-cpu-1-sas-seed0-vs-seed1": ("paper-bert-cpu/1/records/sas-seed0.json",
                                            "paper-bert-cpu/1/records/sas-seed1.json", 0),
    "mlm-smoke-1-pre_ln-seed0-vs-seed1": ("mlm-smoke/1/records/pre_ln-seed0.json",
                                          "mlm-smoke/1/records/pre_ln-seed1.json", 0),
}


@pytest.mark.parametrize("fmt", ["json", "txt"])
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_compare_on_published_pairs_is_unchanged(name, fmt, monkeypatch, capsys):
    baseline, candidate, code = PAIRS[name]
    monkeypatch.chdir(REPO)
    args = ["compare", f"results/{baseline}", f"results/{candidate}"] + (["--json"] if fmt == "json" else [])
    assert main(args) == code
    assert capsys.readouterr().out == (DATA / f"{name}.{fmt}").read_text()
