"""The GPU check page (blockbench/views/gpu_page.py): figures read back exactly from a synthetic gpu-check
directory, failures paired with their notes (a failure without one is "not assessed"), one-line errors for missing
or malformed files, and the published directory rendering as its committed index files."""

import json
import shutil
from pathlib import Path

import pytest

from blockbench.views import page
from blockbench.views.gpu_page import (
    PAPER_SPEED,
    build_gpu_page,
    gpu_summary,
    parse_test_log,
    write_gpu_page,
)
from blockbench.views.selection import LeaderboardError

PUBLISHED = Path(__file__).resolve().parents[2] / "results" / "gpu-check" / "2026-12-04-h200"

LOG = """\
..F.F.                                                                   [100%]
=================================== FAILURES ===================================
_________________________________ test_alpha[x] _________________________________

    def test_alpha():
>       assert 1 == 2
E       AssertionError: one is not two

tests/test_cuda.py:10: AssertionError
___________________________________ test_beta ___________________________________
E       KeyError: 'gone'
blockbench/suite.py:155: KeyError
=========================== short test summary info ============================
FAILED tests/test_cuda.py::test_alpha[x] - AssertionError: one is not two
FAILED tests/test_cuda.py::test_beta - ...
2 failed, 4 passed, 3 warnings in 1.50s
"""

NOTES = """\
[runs."gpu-check.json"]
commit = "abcdef1"
source = "a test"

[failures."tests/test_cuda.py::test_alpha[x]"]
touches = "Only `alpha` numbers."
note = "Checks alpha."

[failures."tests/test_cuda.py::test_gamma"]
touches = "none"
note = "A note for a test that did not fail."
"""


def probe_entry(step_ms, **extra):
    return {"step_ms": step_ms, "tokens_per_s": 16384 / (step_ms / 1e3), "vs_baseline_same_mode": 1.0,
            "vs_pre_ln_eager": 1.0, "iqr": 0.01, "mfu_table": 0.25, "mfu_gemm": 0.5, **extra}


def report(variant="sas_p", steps=None):
    steps = steps or {"pre_ln/eager": 40.0, f"{variant}/eager": 50.0, "pre_ln/graphs": 30.0,
                      f"{variant}/graphs": 24.0}
    return {"suite": "paper-gpu-offline", "suite_version": "2", "variants": ["pre_ln", variant],
            "modes": ["eager", "graphs"], "model": {"n_layers": 18, "d_model": 768, "n_heads": 12, "seq_len": 128},
            "batch": 128, "env": {"torch": "2.11.0", "device": "NVIDIA H200", "triton_mix": True,
                                  "triton_error": None, "triton": "3.6.0"},
            "peak_flops_table": 989.5e12, "gemm_peak_flops": 794e12,
            "build": {k: {"seconds": 1.0, "mode": k.split("/")[1], "graphs_fallback": None, "compile_error": None,
                          "flops_train_per_token": 1} for k in steps},
            "probe": {k: probe_entry(v) for k, v in steps.items()},
            "profile": {k: {"host_ms": 1.0, "wall_ms": v, "gpu_kernel_ms": v / 2, "kernels_per_step": 100.0,
                            "gpu_busy": 0.5} for k, v in steps.items()},
            "peak_memory_bytes": {k: 2**31 for k in steps}}


@pytest.fixture
def check_dir(tmp_path):
    d = tmp_path / "2026-01-02-h200"
    d.mkdir()
    (d / "gpu-check.json").write_text(json.dumps(report()))
    (d / "nvidia-smi.txt").write_text("NVIDIA H200, 580.1, 143771 MiB\n")
    (d / "pytest-cuda.log").write_text(LOG)
    (d / "notes.toml").write_text(NOTES)
    return d


def test_figures_read_back_exactly(check_dir):
    md = page.to_markdown(build_gpu_page(check_dir))
    # Pre-LN 40 ms over SAS-P 50 ms eager; 30 ms over 24 ms under graphs; the paper's 1.16 beside them.
    assert "| sas_p | 1.16 | 0.800 | 1.250 |" in md
    assert md.split("\n\n")[1] == (
        "SAS-P: 1.25x Pre-LN's training-step speed under CUDA graphs, 0.80x eager, on one NVIDIA H200 (L=18, "
        "d=768, H=12, T=128, batch 128; `gpu-check.json`); the paper's figure: 1.16.")
    assert "| sas_p | eager | eager | 50.0 | 327,680 | 0.800 | 1.000 (IQR 0.010) | 0.250 | 0.500 |" in md
    assert "| sas_p | graphs | 2.00 | 1.00 |" in md  # peak memory in GiB and against Pre-LN
    assert "sas_p: removing all host time can make its step at most 4.17x faster than eager" in md  # 50 / 12
    assert "`abcdef1` (not in the file; notes.toml: a test)" in md
    assert "| 794 | 989.5 |" in md
    summary = gpu_summary(check_dir)
    assert summary["speed"] == {"eager": {"pre_ln": 1.0, "sas_p": 0.8}, "graphs": {"pre_ln": 1.0, "sas_p": 1.25}}
    assert summary["date"] == "2026-01-02" and summary["card"] == "NVIDIA H200" and summary["commit"] == "abcdef1"
    assert summary["model"] == {"n_layers": 18, "d_model": 768, "n_heads": 12, "seq_len": 128, "batch": 128}
    assert summary["tests"] == {"passed": 4, "failed": 2, "not_assessed": 1}


def test_a_second_run_and_its_commit_from_the_file_name(check_dir):
    (check_dir / "gpu-check-graphs-0123abc.json").write_text(json.dumps(report(steps={
        "pre_ln/graphs": 33.0, "sas_p/graphs": 30.0})))
    built = build_gpu_page(check_dir)
    md = page.to_markdown(built)
    assert "Other runs here: 1.10x under CUDA graphs (`gpu-check-graphs-0123abc.json`)." \
        in md
    assert "`0123abc` (from the file name)" in md
    # The run with the most steps leads; a mode in both keeps the leading run's ratio.
    assert gpu_summary(check_dir)["speed"]["graphs"]["sas_p"] == 1.25


def test_failures_paired_with_notes_and_unassessed_ones_said(check_dir):
    md = page.to_markdown(build_gpu_page(check_dir))
    assert "**2 failed, 4 passed, 3 warnings**" in md
    assert ("| `tests/test_cuda.py::test_alpha[x]` | AssertionError: one is not two (`tests/test_cuda.py:10`) | "
            "Only `alpha` numbers. | Checks alpha. |") in md
    assert ("| `tests/test_cuda.py::test_beta` | KeyError: 'gone' (`blockbench/suite.py:155`) | **not assessed** | "
            "no note in `notes.toml` |") in md
    assert "Notes for tests that did not fail in this log: `tests/test_cuda.py::test_gamma`." in md


def test_without_notes_every_failure_is_not_assessed(check_dir):
    (check_dir / "notes.toml").unlink()
    md = page.to_markdown(build_gpu_page(check_dir))
    assert md.count("**not assessed**") == 2
    assert "not recorded in this directory" in md


def test_test_log_parsing():
    log = parse_test_log(LOG)
    assert log.counts == {"failed": 2, "passed": 4, "warnings": 3}
    assert log.failures == [("tests/test_cuda.py::test_alpha[x]", "AssertionError: one is not two",
                             "tests/test_cuda.py:10"),
                            ("tests/test_cuda.py::test_beta", "KeyError: 'gone'", "blockbench/suite.py:155")]


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "a JSON object expected"),
    (json.dumps({**report(), "probe": None}), "probe is missing or not an object"),
    (json.dumps({**report(), "model": {"n_layers": 18}}), "model.d_model is missing"),
    (json.dumps({**report(), "probe": {"sas_p/eager": {"step_ms": "fast"}}}), "step_ms must be a positive number"),
    (json.dumps({**report(), "probe": {"no-mode": probe_entry(1.0)}}), "expected 'variant/mode'"),
    (json.dumps({**report(), "profile": {"sas_p/eager": {"host_ms": "x"}}}), "must be a number or null"),
])
def test_malformed_json_is_a_one_line_error(check_dir, text, message):
    (check_dir / "gpu-check.json").write_text(text)
    with pytest.raises(LeaderboardError, match=message) as caught:
        build_gpu_page(check_dir)
    assert "gpu-check.json" in str(caught.value) and "\n" not in str(caught.value)


def test_missing_json_and_bad_notes_are_errors(check_dir, tmp_path):
    (check_dir / "notes.toml").write_text('[failures."x"]\nnote = "only a note"\n')
    with pytest.raises(LeaderboardError, match="must hold exactly touches and note"):
        build_gpu_page(check_dir)
    (check_dir / "notes.toml").unlink()
    (check_dir / "gpu-check.json").unlink()
    with pytest.raises(LeaderboardError, match=r"no gpu-check\*\.json"):
        gpu_summary(check_dir)
    with pytest.raises(LeaderboardError, match="no such directory"):
        build_gpu_page(tmp_path / "absent")


def test_text_from_the_files_is_escaped(check_dir):
    hostile = "<script>alert(1)</script>[x](javascript:alert(1))"
    (check_dir / "gpu-check.json").write_text(json.dumps(report(variant=hostile)))
    html = page.to_html(build_gpu_page(check_dir))
    assert "<script>" not in html and 'href="javascript' not in html
    assert "&lt;script&gt;" in html


def test_regenerating_is_byte_identical(check_dir):
    assert write_gpu_page(check_dir) == ["index.html", "index.md"]
    first = [(check_dir / n).read_bytes() for n in ("index.html", "index.md")]
    write_gpu_page(check_dir)
    assert [(check_dir / n).read_bytes() for n in ("index.html", "index.md")] == first
    assert b'class="headline"' in first[0]


def test_the_published_directory_renders_as_its_index_files(tmp_path):
    copy = tmp_path / PUBLISHED.name
    shutil.copytree(PUBLISHED, copy)
    built = build_gpu_page(copy)
    assert page.to_markdown(built) == (PUBLISHED / "index.md").read_text()
    assert page.to_html(built) == (PUBLISHED / "index.html").read_text()
    md = page.to_markdown(built)
    assert "**not assessed**" not in md  # every failure of the published log has its note
    assert md.split("\n\n")[1].startswith("SAS-P: ")
    summary = gpu_summary(copy)
    assert summary["tests"] == {"passed": 6, "failed": 5, "not_assessed": 0}
    assert set(summary["speed"]) == {"eager", "graphs", "compiled", "compiled+graphs"}
    probe = json.loads((PUBLISHED / "gpu-check.json").read_text())["probe"]
    assert summary["speed"]["graphs"]["sas_p"] == probe["pre_ln/graphs"]["step_ms"] / probe["sas_p/graphs"]["step_ms"]
    assert set(PAPER_SPEED) <= set(summary["speed"]["graphs"])
