"""A GPU check's directory (`results/gpu-check/DATE-CARD/`: ci/gpu-check.sh's output) as one page, index.html and
index.md: speed against Pre-LN per execution mode beside the paper's figure, MFU, host and GPU time, memory and
bounds per run, the card and versions, and the CUDA test log with a human reading of each failure.

Every number comes from the directory's files: each `gpu-check*.json` is one run (ci/gpu_check.py's report),
`nvidia-smi.txt` names the card, `pytest-cuda.log` holds tests/test_cuda.py's outcome. What a failing test means
for the published numbers cannot be read off a log, so `notes.toml` (written by a person) says it per failing test
id; a failure without a note is shown as "not assessed", never as harmless. All text read from these files is
escaped (blockbench.untrusted) before it joins the page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from blockbench.safeio import (
    UnsafeFileError,
    atomic_write_text,
    load_json_guarded,
    load_toml_guarded,
    read_text_guarded,
)
from blockbench.untrusted import md, md_code, plain
from blockbench.views import page
from blockbench.views.selection import LeaderboardError

FILES = ("index.html", "index.md")
NOTES = "notes.toml"
SMI = "nvidia-smi.txt"
TEST_LOG = "pytest-cuda.log"
REPORT_LOG = "report.log"
BASELINE = "pre_ln"
HEADLINE_VARIANT = "sas_p"
MAX_LOG_BYTES = 4 * 2**20
# The profile's wall time (median of three plain steps) and its kernel time (three profiled steps) are separate
# measurements, so their ratio wanders by a percent or so; past this the kernel time cannot be a time the step took.
BUSY_LIMIT = 1.02

# He & Hofmann, "Simplifying Transformer Blocks" (ICLR 2024), Table 1, as transcribed in
# ../shared/reference/simplifying-transformer-blocks.md section 5: Crammed BERT (16 layers, bidirectional, one
# RTX 2080Ti), speed = microbatch steps in 24 h relative to Pre-LN. The abstract's "16% faster training
# throughput" (v2) is SAS-P's figure here; the paper's CodeParrot runs (the shape of paper-gpu-offline, on an A5000)
# give runtimes in figures only (Fig. 5), no per-variant number in the text.
PAPER_SPEED: dict[str, float] = {"pre_ln": 1.0, "parallel": 1.05, "vskipinit": 0.95, "sas": 1.09, "sas_p": 1.16,
                                 "sas_p_nonorm": 1.20}
PAPER_NAMES = {"pre_ln": "Pre-LN", "parallel": "Parallel", "vskipinit": "V-SkipInit", "sas": "SAS", "sas_p": "SAS-P",
               "sas_p_nonorm": "SAS-P, no norm"}

MODE_WORDS = {"graphs": "under CUDA graphs", "eager": "eager", "compiled": "compiled",
              "compiled+graphs": "compiled with CUDA graphs"}
RAW_FILES = {SMI: "the card, as `nvidia-smi --query-gpu=name,driver_version,memory.total` printed it",
             TEST_LOG: "tests/test_cuda.py on the card (pytest -q)",
             REPORT_LOG: "ci/gpu_check.py's console output for `gpu-check.json`",
             NOTES: "a person's reading of each failing CUDA test (this page pairs them with the log)"}
_HEX = re.compile(r"[0-9a-f]{7,40}")


@dataclass
class Run:
    """One gpu-check JSON file: its data, and the commit of the code it measured with where that came from."""

    name: str
    data: dict[str, Any]
    commit: str | None = None
    commit_source: str = "not recorded in this directory"

    def section(self, key: str) -> dict[str, Any]:
        """A section of the report, {} when absent or when ci/gpu_check.py recorded it as failed."""
        value = self.data.get(key)
        return value if isinstance(value, dict) and "error" not in value else {}

    def failed(self, key: str) -> str:
        value = self.data.get(key)
        return str(value["error"]) if isinstance(value, dict) and "error" in value else ""

    def entries(self) -> list[tuple[str, str]]:
        """(variant, mode) of every probed step, in the report's order."""
        return [tuple(name.split("/", 1)) for name in self.section("probe")]  # type: ignore[misc]

    def modes(self) -> list[str]:
        return list(dict.fromkeys(mode for _, mode in self.entries()))

    def variants(self) -> list[str]:
        return list(dict.fromkeys(variant for variant, _ in self.entries()))


@dataclass
class TestLog:
    """What pytest-cuda.log says: the counts of its last line and each FAILED test with its error."""

    present: bool
    counts: dict[str, int] = field(default_factory=dict)
    status: str = ""
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (test id, error, where it was raised)


# ---------------------------------------------------------------------------------------------------------------
# Reading


CHECKS_DIR = "gpu-check"  # results/gpu-check/<date>/: one directory per published GPU check


def published_checks(root: Path) -> list[Path]:
    """The GPU checks published under a results root, newest (by directory name, a date first) first."""
    base = Path(root) / CHECKS_DIR
    if not base.is_dir():
        return []
    return sorted((p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_probe(path: Path, probe: dict[str, Any]) -> None:
    for name, entry in probe.items():
        variant, _, mode = name.partition("/")
        if not variant or not mode or not isinstance(entry, dict):
            raise LeaderboardError(f"{path}: probe.{plain(name)}: expected 'variant/mode' -> an object")
        if not _is_number(entry.get("step_ms")) or entry["step_ms"] <= 0:
            raise LeaderboardError(f"{path}: probe.{plain(name)}.step_ms must be a positive number")
        for key, value in entry.items():
            if key != "ratios" and value is not None and not _is_number(value):
                raise LeaderboardError(f"{path}: probe.{plain(name)}.{plain(key)} must be a number or null")


def _check_sections(path: Path, data: dict[str, Any]) -> None:
    """Optional sections are objects (or ci/gpu_check.py's {"error": ...}); their figures are numbers or null."""
    for key in ("build", "profile", "peak_memory_bytes", "predicted_launches", "attention_memory_bytes",
                "matmul_bound"):
        section = data.get(key)
        if section is None or (isinstance(section, dict) and "error" in section):
            continue
        if not isinstance(section, dict):
            raise LeaderboardError(f"{path}: {key} must be an object")
        for name, entry in section.items():
            values = entry.items() if isinstance(entry, dict) else [("", entry)]
            for sub, value in values:
                if sub in ("mode", "graphs_fallback", "compile_error", "top_host_ops", "by_op"):
                    continue
                if value is not None and not _is_number(value) and key != "predicted_launches":
                    raise LeaderboardError(f"{path}: {key}.{plain(name)}{'.' if sub else ''}{plain(sub)} must be "
                                           "a number or null")


def load_run(path: Path) -> dict[str, Any]:
    """One gpu-check JSON file, checked: a one-line LeaderboardError when it is missing, not JSON, or lacks what
    the page needs (model shape, batch, env, probe)."""
    try:
        data = load_json_guarded(path, what="gpu-check JSON file")
    except UnsafeFileError as exc:
        raise LeaderboardError(str(exc)) from None
    if not isinstance(data, dict):
        raise LeaderboardError(f"{path}: not a gpu-check report (a JSON object expected)")
    for key, kind in (("model", dict), ("batch", int), ("env", dict), ("probe", dict)):
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise LeaderboardError(f"{path}: {key} is missing or not {'an integer' if kind is int else 'an object'}")
    for key in ("n_layers", "d_model", "n_heads", "seq_len"):
        if not isinstance(data["model"].get(key), int):
            raise LeaderboardError(f"{path}: model.{key} is missing or not an integer")
    if "error" not in data["probe"]:
        _check_probe(path, data["probe"])
    _check_sections(path, data)
    return data


def load_notes(directory: Path) -> dict[str, Any]:
    """notes.toml: {"failures": {test id: {"touches", "note"}}, "runs": {file: {"commit", "source"}}}; {} if absent."""
    path = directory / NOTES
    if not path.exists():
        return {}
    try:
        notes = load_toml_guarded(path, max_depth=4, what="notes file")
    except UnsafeFileError as exc:
        raise LeaderboardError(str(exc)) from None
    fields = {"failures": ("touches", "note"), "runs": ("commit", "source")}
    for table, entries in notes.items():
        if table not in fields or not isinstance(entries, dict):
            raise LeaderboardError(f"{path}: [{plain(table)}]: unknown table (valid: failures, runs)")
        for key, entry in entries.items():
            if not isinstance(entry, dict) or sorted(entry) != sorted(fields[table]) or not all(
                    isinstance(v, str) and v.strip() for v in entry.values()):
                raise LeaderboardError(f"{path}: [{table}.{plain(key)!r}] must hold exactly "
                                       f"{' and '.join(fields[table])}, each a non-empty string")
            if table == "runs" and not _HEX.fullmatch(entry["commit"]):
                raise LeaderboardError(f"{path}: [runs.{plain(key)!r}].commit is not a commit hash")
    return notes


def _recorded_commit(directory: Path, path: Path, data: dict[str, Any]) -> tuple[str | None, str]:
    """The commit a run names itself: in its JSON, in its file name (`gpu-check-graphs-e1c1fbd.json`), or, for
    gpu-check.json, in report.log (the console of the same ci/gpu_check.py run)."""
    git = data.get("git") if isinstance(data.get("git"), dict) else {}
    for candidate in (data.get("commit"), git.get("commit")):
        if isinstance(candidate, str) and _HEX.fullmatch(candidate):
            return candidate, "from the JSON"
    named = re.search(r"-([0-9a-f]{7,40})\.json$", path.name)
    if named:
        return named.group(1), "from the file name"
    log = directory / REPORT_LOG
    if path.name == "gpu-check.json" and log.is_file():
        found = re.search(r"\bcommit[ :=]+([0-9a-f]{7,40})\b", _read_log(log))
        if found:
            return found.group(1), f"from {REPORT_LOG}"
    return None, "not recorded in this directory"


def load_runs(directory: Path, notes: dict[str, Any]) -> list[Run]:
    paths = sorted(p for p in directory.glob("gpu-check*.json") if not p.name.startswith("."))
    if not paths:
        raise LeaderboardError(f"{directory}: no gpu-check*.json (ci/gpu_check.py's report) in this directory")
    runs = []
    for path in paths:
        run = Run(path.name, load_run(path))
        run.commit, run.commit_source = _recorded_commit(directory, path, run.data)
        noted = notes.get("runs", {}).get(path.name)
        if noted and run.commit and not (run.commit.startswith(noted["commit"])
                                         or noted["commit"].startswith(run.commit)):
            raise LeaderboardError(f"{directory / NOTES}: [runs.{path.name!r}] says commit {noted['commit']}, "
                                   f"but {run.commit_source} says {run.commit}")
        if noted and not run.commit:
            run.commit, run.commit_source = noted["commit"], f"not in the file; {NOTES}: {noted['source']}"
        runs.append(run)
    main = primary(runs)
    return [main] + [r for r in runs if r is not main]


def _read_log(path: Path) -> str:
    try:
        return read_text_guarded(path, MAX_LOG_BYTES, "log")
    except UnsafeFileError as exc:
        raise LeaderboardError(str(exc)) from None


def parse_test_log(text: str) -> TestLog:
    """The FAILED lines of pytest's short summary, each with the first `E ` line and the raising location of its
    section, and the counts of the last summary line ("5 failed, 6 passed, 15 warnings in 33.68s")."""
    log = TestLog(present=True)
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        header = re.fullmatch(r"_{3,} (.+?) _{3,}", line)
        if header:
            current = sections.setdefault(header.group(1), [])
        elif line.startswith("=") or line.startswith("FAILED "):
            current = None
        elif current is not None:
            current.append(line)
        failed = re.match(r"FAILED (\S+)", line)
        if failed:
            log.failures.append((failed.group(1), "", ""))
        status = re.fullmatch(r"=*\s*((?:\d+ [a-z]+(?:, )?)+) in [0-9.]+s.*?=*", line.strip())
        if status:
            log.status = status.group(1)
            log.counts = {("errors" if k == "error" else k): int(n) for n, k in re.findall(r"(\d+) ([a-z]+)",
                                                                                         status.group(1))}
    for i, (test_id, _, _) in enumerate(log.failures):
        body = sections.get(test_id.split("::")[-1], [])
        error = next((ln[1:].strip() for ln in body if ln.startswith("E ")), "")
        where = [m.group(1) for ln in body if (m := re.fullmatch(r"(\S+:\d+): \w+", ln))]
        log.failures[i] = (test_id, error, where[-1] if where else "")
    return log


def load_test_log(directory: Path) -> TestLog:
    path = directory / TEST_LOG
    return parse_test_log(_read_log(path)) if path.exists() else TestLog(present=False)


def card(directory: Path, runs: list[Run]) -> tuple[str, str]:
    """(the card's name, what nvidia-smi said of it) from nvidia-smi.txt (name, driver, memory: the query
    ci/gpu-check.sh makes), else the torch device name of the first run."""
    path = directory / SMI
    lines = [ln for ln in _read_log(path).splitlines() if ln.strip()] if path.exists() else []
    if not lines:
        return str(runs[0].data["env"].get("device") or "unknown"), f"no {SMI}"
    fields = [f.strip() for f in lines[0].split(",")]
    detail = f"driver {fields[1]}, {fields[2]}" if len(fields) >= 3 else lines[0]
    return fields[0], detail + (f"; {len(lines)} cards listed" if len(lines) > 1 else "")


# ---------------------------------------------------------------------------------------------------------------
# Figures


def speed_ratios(run: Run) -> dict[str, dict[str, float | None]]:
    """Per mode, per variant: Pre-LN's median step time over the variant's, same mode, same run (None when the
    run has no Pre-LN in that mode)."""
    probe = run.section("probe")
    out: dict[str, dict[str, float | None]] = {}
    for variant, mode in run.entries():
        base = probe.get(f"{BASELINE}/{mode}")
        out.setdefault(mode, {})[variant] = (base["step_ms"] / probe[f"{variant}/{mode}"]["step_ms"]
                                             if base else None)
    return out


def primary(runs: list[Run]) -> Run:
    """The run the headline reports: the one with the most probed steps (ci/gpu_check.py's full report)."""
    return max(runs, key=lambda r: (len(r.entries()), [-ord(c) for c in r.name]))


def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    return "-" if not _is_number(value) else f"{format(value, spec)}{suffix}"


def _gib(value: Any) -> str:
    return "-" if not _is_number(value) else f"{value / 2**30:.2f}"


def _mode_words(mode: str) -> str:
    return MODE_WORDS.get(mode, md(mode))


def _ordered_modes(modes: list[str]) -> list[str]:
    order = list(MODE_WORDS)
    return sorted(modes, key=lambda m: (order.index(m) if m in order else len(order), modes.index(m)))


def _variant_speeds(run: Run, variant: str, lead: bool = False) -> str:
    ratios = speed_ratios(run)
    parts = [f"{ratios[m][variant]:.2f}x {_mode_words(m)}" for m in _ordered_modes(run.modes())
             if ratios[m].get(variant) is not None]
    if parts and lead:  # the headline's first figure says what the ratios are of; every other one follows it
        parts[0] = parts[0].replace("x ", "x Pre-LN's training-step speed ", 1)
    return ", ".join(parts)


def headline(runs: list[Run]) -> str:
    """The main speed result in one or two sentences, every figure from the JSON."""
    main = primary(runs)
    data, name = main.data, PAPER_NAMES.get(HEADLINE_VARIANT, HEADLINE_VARIANT)
    shape = (f"L={data['model']['n_layers']}, d={data['model']['d_model']}, H={data['model']['n_heads']}, "
             f"T={data['model']['seq_len']}, batch {data['batch']}")
    speeds = _variant_speeds(main, HEADLINE_VARIANT, lead=True)
    if not speeds:
        return f"{md_code(main.name)} holds no {name} step against Pre-LN ({shape}, {md(data['env'].get('device'))})."
    text = (f"{name}: {speeds}, on one {md(data['env'].get('device'))} ({shape}; {md_code(main.name)}); the "
            f"paper's figure: {PAPER_SPEED[HEADLINE_VARIANT]:.2f}.")
    others = [f"{s} ({md_code(r.name)})" for r in runs if r is not main and (s := _variant_speeds(r, HEADLINE_VARIANT))]
    return text + (f" Other runs here: {'; '.join(others)}." if others else "")



# ---------------------------------------------------------------------------------------------------------------
# The page


def _runs_table(runs: list[Run]) -> page.Table:
    rows = []
    for run in runs:
        data, env = run.data, run.data["env"]
        suite = f"{md(data.get('suite', '-'))} v{md(data.get('suite_version', '-'))}"
        commit = md_code(run.commit) + f" ({md(run.commit_source)})" if run.commit else md(run.commit_source)
        mix = "yes" if env.get("triton_mix") is True else f"no ({md(env.get('triton_error'))})"
        rows.append([md_code(run.name), commit, suite, ", ".join(md(m) for m in run.modes()),
                     str(len(run.variants())), md(env.get("device")), md(env.get("torch")), md(env.get("triton")),
                     mix, _fmt(_tflops(data.get("gemm_peak_flops")), ".0f"),
                     _fmt(_tflops(data.get("peak_flops_table")), ".1f")])
    return page.table(["file", "commit", "suite", "modes", "variants", "device (torch)", "torch", "Triton",
                       "shaped mix on Triton", "measured bf16 GEMM peak (TFLOP/s)", "spec-table peak (TFLOP/s)"],
                      rows, frozenset({"file", "commit", "suite", "modes", "device (torch)", "torch", "Triton",
                                       "shaped mix on Triton"}))


def _tflops(value: Any) -> float | None:
    return value / 1e12 if _is_number(value) else None


def _speed_table(runs: list[Run]) -> page.Table:
    columns = [(run, mode) for run in runs for mode in run.modes()]
    variants = list(dict.fromkeys(v for run in runs for v in run.variants()))
    ratios = {run.name: speed_ratios(run) for run in runs}
    rows = []
    for variant in variants:
        paper = PAPER_SPEED.get(variant)
        cells = [md(variant), "-" if paper is None else f"{paper:.2f}"]
        cells += [_fmt(ratios[run.name][mode].get(variant), ".3f") for run, mode in columns]
        rows.append(cells)
    header = ["variant", "paper (Table 1)"] + [f"{md(mode)}, {md_code(run.name)}" for run, mode in columns]
    return page.table(header, rows, frozenset({"variant"}))


def _ran_as(run: Run, name: str) -> str:
    built = run.section("build").get(name)
    if not isinstance(built, dict):
        return "-"
    extra = [f"{k.replace('_', ' ')}: {md(built[k])}" for k in ("graphs_fallback", "compile_error") if built.get(k)]
    return md(built.get("mode", "-")) + (f" ({'; '.join(extra)})" if extra else "")


def _time_table(run: Run) -> page.Table:
    probe, profile = run.section("probe"), run.section("profile")
    ratios = speed_ratios(run)
    pair = next((k for e in probe.values() for k in e if k.startswith("vs_") and k != "vs_baseline_same_mode"), "")
    against = pair[3:].replace(f"{BASELINE}_", f"{BASELINE}/", 1) if pair else "-"
    rows = []
    for variant, mode in run.entries():
        name = f"{variant}/{mode}"
        p, prof = probe[name], profile.get(name, {})
        per_round = f"{_fmt(p.get(pair), '.3f')} (IQR {_fmt(p.get('iqr'), '.3f')})" if pair else "-"
        rows.append([md(variant), md(mode), _ran_as(run, name), _fmt(p["step_ms"], ".1f"),
                     _fmt(p.get("tokens_per_s"), ",.0f"), _fmt(ratios[mode][variant], ".3f"), per_round,
                     _fmt(p.get("mfu_table"), ".3f"), _fmt(p.get("mfu_gemm"), ".3f"), _fmt(prof.get("host_ms"), ".1f"),
                     _fmt(prof.get("wall_ms"), ".1f"), _fmt(prof.get("gpu_kernel_ms"), ".1f"),
                     _fmt(prof.get("gpu_busy"), ".2f"), _fmt(prof.get("kernels_per_step"), ".0f")])
    header = ["variant", "mode", "ran as", "ms / step", "tokens / s", "speed vs Pre-LN (same mode)",
              f"median per-round ratio vs {md(against)} (IQR)", "MFU (spec-table peak)", "MFU (measured GEMM peak)",
              "host ms", "wall ms", "GPU kernel ms", "GPU busy", "kernels / step"]
    return page.table(header, rows, frozenset({"variant", "mode", "ran as"}))


def _memory_table(run: Run) -> page.Table | None:
    memory = run.section("peak_memory_bytes")
    if not memory:
        return None
    rows = []
    for variant, mode in run.entries():
        value, base = memory.get(f"{variant}/{mode}"), memory.get(f"{BASELINE}/{mode}")
        ratio = value / base if _is_number(value) and _is_number(base) and base else None
        rows.append([md(variant), md(mode), _gib(value), _fmt(ratio, ".2f")])
    return page.table(["variant", "mode", "peak memory (GiB)", "vs Pre-LN (same mode)"], rows,
                      frozenset({"variant", "mode"}))


def _run_blocks(run: Run) -> list[page.Block]:
    blocks: list[page.Block] = [page.Heading(f"Run {md_code(run.name)}", 3)]
    failed = [f"{key}: {md(run.failed(key))}" for key in ("probe", "profile", "peak_memory_bytes", "build")
              if run.failed(key)]
    if failed:
        blocks.append(page.Para("Sections ci/gpu_check.py recorded as failed: " + "; ".join(failed), "caveat"))
    if run.section("probe"):
        blocks.append(_time_table(run))
    memory = _memory_table(run)
    blocks.append(memory if memory else page.Para(f"{md_code(run.name)} holds no peak memory."))
    return blocks


def bounds(run: Run) -> list[str]:
    """What the figures allow at most (as ci/gpu_table.py says them), and where a figure is not to be trusted."""
    probe, profile = run.section("probe"), run.section("profile")
    lines = []
    for variant, b in run.section("matmul_bound").items():
        if isinstance(b, dict) and _is_number(b.get("ms_per_step")):
            lines.append(f"{md(variant)}: its matmuls and attention kernels alone take {b['ms_per_step']:.1f} ms per "
                         f"step; MFU at this shape is at most {_fmt(b.get('mfu_ceiling_table'), '.3f')} of the "
                         "spec-table peak with these kernels.")
    for variant, mode in run.entries():
        graphed = profile.get(f"{variant}/graphs", {})
        if mode == "eager" and _is_number(graphed.get("gpu_kernel_ms")) and graphed["gpu_kernel_ms"] > 0:
            step = probe[f"{variant}/eager"]["step_ms"]
            lines.append(f"{md(variant)}: removing all host time can make its step at most "
                         f"{step / graphed['gpu_kernel_ms']:.2f}x faster than eager (eager {step:.1f} ms per step, "
                         f"{graphed['gpu_kernel_ms']:.1f} ms of kernels under graphs).")
    busy = [f"{md(name)} ({p['gpu_busy']:.2f})" for name, p in profile.items()
            if isinstance(p, dict) and _is_number(p.get("gpu_busy")) and p["gpu_busy"] > BUSY_LIMIT]
    if busy:
        lines.append(f"The profiler's kernel time exceeds the wall time by more than {BUSY_LIMIT - 1:.0%} (GPU busy "
                     "above 1) for " + ", ".join(busy) +
                     ": their GPU kernel ms are not a time the step took (kernels overlapped, or were counted "
                     "more than once; these files cannot say which).")
    return lines + _launch_lines(run)


def _launch_lines(run: Run) -> list[str]:
    predicted, profile = run.section("predicted_launches"), run.section("profile")
    parts = []
    for variant, count in predicted.items():
        measured = profile.get(f"{variant}/eager", {}).get("kernels_per_step")
        parts.append(f"{md(variant)} {_fmt(count, '.0f') if _is_number(count) else md(count)}"
                     + (f" (measured eager: {measured:.0f})" if _is_number(measured) else ""))
    attention = run.section("attention_memory_bytes")
    lines = [f"Kernel launches per step the step-cost model predicts: {', '.join(parts)}."] if parts else []
    if attention:
        lines.append("Peak memory of one attention sub-block forward and backward (ci/gpu_check.py's attention "
                     "check; its shape is not recorded in the JSON): " + ", ".join(
                         f"{md(v)} {_gib(b)} GiB" for v, b in attention.items()) + ".")
    return lines


def _tests_blocks(log: TestLog, notes: dict[str, Any]) -> list[page.Block]:
    blocks: list[page.Block] = [page.Heading("CUDA tests")]
    if not log.present:
        return blocks + [page.Para(f"No {md_code(TEST_LOG)} in this directory: the CUDA tests are not reported.",
                                   "caveat")]
    status = md(log.status) if log.status else "no summary line (the run may have been cut off)"
    blocks.append(page.Para(f"{md_code(TEST_LOG)} (tests/test_cuda.py as it stood when the log was made; the log "
                            f"names no commit): **{status}**."))
    if log.counts.get("failed", len(log.failures)) != len(log.failures):
        blocks.append(page.Para(f"The summary counts {log.counts.get('failed')} failures but lists "
                                f"{len(log.failures)} FAILED lines.", "caveat"))
    noted = notes.get("failures", {})
    rows = []
    for test_id, error, where in log.failures:
        note = noted.get(test_id)
        rows.append([md_code(test_id), md(error) + (f" ({md_code(where)})" if where else "") if error else "-",
                     page.vetted_markdown(note["touches"]) if note else "**not assessed**",
                     page.vetted_markdown(note["note"]) if note else f"no note in {md_code(NOTES)}"])
    if rows:
        blocks.append(page.table(["failed test", "error (where raised)", "touches published numbers?", "note"],
                                 rows, frozenset({"failed test", "error (where raised)",
                                                  "touches published numbers?", "note"})))
        blocks.append(page.Para(f"The notes are a person's reading ({md_code(NOTES)}); a failure without one is "
                                "shown as not assessed."))
    stale = sorted(set(noted) - {f[0] for f in log.failures})
    if stale:
        blocks.append(page.Para("Notes for tests that did not fail in this log: " +
                                ", ".join(md_code(s) for s in stale) + ".", "caveat"))
    return blocks


def _raw_blocks(directory: Path) -> list[page.Block]:
    items = []
    for path in sorted(directory.iterdir()):
        if path.name in FILES or path.name.startswith(".") or path.is_symlink() or not path.is_file():
            continue
        about = RAW_FILES.get(path.name) or (
            "ci/gpu_check.py's report (one run)" if re.fullmatch(r"gpu-check.*\.json", path.name) else "")
        items.append(f"[{md(path.name)}]({quote(path.name)})" + (f": {about}" if about else ""))
    return [page.Heading("Raw files"), page.Bullets(tuple(items))]


def build_gpu_page(directory: Path) -> page.Page:
    """The page of one GPU check directory; a one-line LeaderboardError for a missing or malformed file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise LeaderboardError(f"{directory}: no such directory (expected a GPU check's output)")
    notes = load_notes(directory)
    runs, log = load_runs(directory, notes), load_test_log(directory)
    name, detail = card(directory, runs)
    date = _date(directory)
    result = page.Page(f"GPU check{', ' + md(date) if date else ''}: {md(name)}")
    result.add(page.Para(headline(runs), "headline"))
    result.add(page.Para(f"Card: {md(name)} ({md(detail)}). Speed is Pre-LN's median step time over the variant's, "
                         "in the same execution mode and the same process (ci/gpu_check.py times the steps "
                         "interleaved): above 1 the variant trains faster per step. MFU is the model's training "
                         "FLOPs per second over the card's spec-table bf16 peak and over a bf16 GEMM peak measured "
                         "on the card in the same run."))
    result.add(page.Heading("Runs"), _runs_table(runs))
    result.add(page.Heading("Speed against Pre-LN"), _speed_table(runs), page.Para(_paper_words(), "caveat"))
    result.add(page.Heading("Time, MFU and memory per run"))
    for run in runs:
        result.add(*_run_blocks(run))
    result.add(page.Heading("Bounds"))
    for run in runs:
        lines = bounds(run)
        result.add(page.Para(f"{md_code(run.name)}:"), page.Bullets(tuple(lines)) if lines else
                   page.Para("no bound can be read from this run (no eager and graphs pair, no matmul bound)."))
    result.add(*_tests_blocks(log, notes))
    result.add(*_raw_blocks(directory))
    return result


def _paper_words() -> str:
    gain = (PAPER_SPEED["sas_p"] - 1) * 100
    return ("The paper column is He & Hofmann's Table 1: Crammed BERT (16 layers, bidirectional) on one RTX 2080Ti, "
            "microbatch steps in 24 h relative to Pre-LN; a different model, card and implementation from these "
            f"runs. Its abstract's {gain:.0f}% faster training throughput is SAS-P's figure there; its CodeParrot "
            "runs (the shape of these runs, on an A5000) give runtimes in figures only.")


def _date(directory: Path) -> str:
    found = re.match(r"\d{4}-\d{2}-\d{2}", directory.resolve().name)
    return found.group(0) if found else ""


def gpu_summary(directory: Path) -> dict[str, Any]:
    """What the landing page shows of a GPU check: date, card, the headline run's commit and suite, the model
    shape, speed vs Pre-LN per mode (each mode from the headline run, else the first run that has it) and the
    CUDA test counts."""
    directory = Path(directory)
    notes = load_notes(directory)
    runs = load_runs(directory, notes)
    main, log = primary(runs), load_test_log(directory)
    speed: dict[str, dict[str, float | None]] = {}
    source: dict[str, str] = {}
    for run in [main] + [r for r in runs if r is not main]:
        for mode, ratios in speed_ratios(run).items():
            if mode not in speed:
                speed[mode], source[mode] = ratios, run.name
    noted = notes.get("failures", {})
    data = main.data
    return {"date": _date(directory) or None, "card": card(directory, runs)[0], "commit": main.commit,
            "commit_source": main.commit_source, "run": main.name,
            "suite": f"{data.get('suite')} v{data.get('suite_version')}",
            "model": {**{k: data["model"][k] for k in ("n_layers", "d_model", "n_heads", "seq_len")},
                      "batch": data["batch"]},
            "speed": speed, "speed_source": source,
            "tests": {"passed": log.counts.get("passed") if log.present else None,
                      "failed": log.counts.get("failed", len(log.failures)) if log.present else None,
                      "not_assessed": sum(1 for f in log.failures if f[0] not in noted)}}


def write_gpu_page(directory: Path, out: Path | None = None) -> list[str]:
    """index.html and index.md of the check in `directory`, written atomically into `out` (default: the same
    directory); the names written."""
    directory = Path(directory)
    out = Path(out) if out is not None else directory
    built = build_gpu_page(directory)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "index.html", page.to_html(built), "GPU check page")
    atomic_write_text(out / "index.md", page.to_markdown(built), "GPU check page")
    return list(FILES)
