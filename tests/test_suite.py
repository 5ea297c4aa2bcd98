"""Suite files: validation names file and key; versions and content hashes are enforced."""

import json
from pathlib import Path

import pytest

from blockbench import stats
from blockbench.records import load_records
from blockbench.suite import SuiteError, builtin_suites, load_suite, parse_suite, read_lock
from tests.tiny_suite import TINY_SUITE, write_suite

REPO = Path(__file__).resolve().parents[1]


def test_builtin_suites_load_and_match_their_lock():
    lock = read_lock()
    for name in ("smoke", "default", "paper-codeparrot"):
        assert name in builtin_suites()
    for name in builtin_suites():
        suite = load_suite(name)  # raises if edited without a version bump
        assert lock[suite.name][suite.version] == suite.hash
        assert suite.baseline in suite.variants


def _published(suite_name: str) -> list[dict]:
    suite = load_suite(suite_name)
    return load_records(REPO / "results" / suite.name / suite.version / "records")


def test_default_suite_ranks_like_the_long_run():
    """What plain `blockbench run` prints must agree with the long runs (issue 13; issue 31 for today's baseline):
    over the variants both ran, Kendall's tau-b >= 0.7 between the published default ranking and each long run's
    ranking as its leaderboard gives it (variants whose order the long run cannot resolve share a rank, a tie):
    paper-cpu for the paper's blocks, modern-cpu for transformer_pp against them; naive skipless last; SAS-P
    without norm not ahead of SAS-P; and the default's own stability line settled. Computed from the published
    records of the suites' current versions, so a new version of any of them is held to it too."""
    default = _published("default")
    short = stats.stability(default, "test/default")
    assert short.word == stats.NOT_JUDGED and stats.curve_settled(short.taus), short.line()
    assert short.order[-1] == "naive_skipless"
    assert short.order.index("sas_p_nonorm") > short.order.index("sas_p")
    for long_suite, at_least in (("paper-cpu", 4), ("modern-cpu", 3)):
        long = stats.stability(_published(long_suite), f"test/{long_suite}")
        shared = [v for v in short.order if v in long.order]
        assert len(shared) >= at_least, (long_suite, shared)
        long_rank = {v: long.rank_range[v][0] for v in shared}  # a tie shares the first rank of its range
        short_rank = {v: short.order.index(v) for v in shared}
        tau = stats.kendall_tau([short_rank[v] for v in shared], [long_rank[v] for v in shared])
        assert tau >= 0.7, (long_suite, shared, tau)


def test_paper_codeparrot_is_the_papers_setup():
    suite = load_suite("paper-codeparrot")
    assert (suite.model.n_layers, suite.model.d_model, suite.model.n_heads, suite.model.seq_len) == (18, 768, 12, 128)
    assert suite.optim.batch_size == 128 and suite.optim.betas == (0.9, 0.999) and suite.optim.eps == 1e-8
    assert suite.optim.weight_decay == 0.1 and suite.optim.grad_clip == 1.0 and suite.optim.warmup_fraction == 0.05
    assert suite.data.corpus == "hub" and suite.optim_for("vskipinit").lr == 3e-4


def test_hash_ignores_formatting_but_not_content(tmp_path):
    a = load_suite(str(write_suite(tmp_path, TINY_SUITE, "a.toml")))
    b = load_suite(str(write_suite(tmp_path, "# a comment\n" + TINY_SUITE.replace("steps = 6", "steps   =   6"),
                                   "b.toml")))
    c = load_suite(str(write_suite(tmp_path, TINY_SUITE.replace("steps = 6", "steps = 7"), "c.toml")))
    assert a.hash == b.hash != c.hash


def test_editing_a_builtin_suite_without_a_version_bump_is_an_error(tmp_path, monkeypatch):
    import blockbench.suite as suite_module

    (tmp_path / "tiny.toml").write_text(TINY_SUITE)
    monkeypatch.setattr(suite_module, "SUITES_DIR", tmp_path)
    monkeypatch.setattr(suite_module, "LOCK_FILE", tmp_path / "LOCK.json")
    suite_module.write_lock()
    load_suite("tiny")
    (tmp_path / "tiny.toml").write_text(TINY_SUITE.replace("steps = 6", "steps = 8"))
    with pytest.raises(SuiteError, match="changed without a version bump"):
        load_suite("tiny")
    with pytest.raises(SuiteError, match="bump its version"):
        suite_module.write_lock()
    (tmp_path / "tiny.toml").write_text(TINY_SUITE.replace("steps = 6", "steps = 8").replace('version = "1"',
                                                                                             'version = "2"'))
    suite_module.write_lock()
    assert set(json.loads((tmp_path / "LOCK.json").read_text())["tiny"]) == {"1", "2"}


@pytest.mark.parametrize("edit,needle", [
    (("[budget]\nsteps = 6", "[budget]\nstepz = 6"), "budget.stepz: unknown key"),
    (("[budget]\nsteps = 6", "[budget]\nsteps = -6"), "budget.steps: must be positive"),
    (("[budget]\nsteps = 6", "[budget]\nsteps = 'six'"), "budget.steps: expected an integer"),
    (("[budget]\nsteps = 6", "[budget]"), "budget: give at least one"),
    (("n_layers = 1", ""), "model.n_layers: missing"),
    (("n_heads = 2", "n_heads = 3"), "not divisible"),
    (("lr = 3e-3", "lr = 0"), "optim.lr: must be positive"),
    (("[variants.sas_p]\nlr = 1e-2", "[variants.sas_p]\nlrr = 1e-2"), "variants.sas_p.lrr: unknown key"),
    (("[variants.sas_p]", "[variants.nope]"), "unknown variant 'nope'"),
    (("[variants.sas_p]", "[variants.sas_p]\nspec = { layout = 'diagonal' }"), "variants.sas_p"),
    (('baseline = "pre_ln"', 'baseline = "post_ln"'), "suite.baseline"),
    (("target_loss = 4.5", "target_loss = -1.0"), "eval.target_loss"),
    (('tokenizer = "bytes"', 'tokenizer = "wordpiece"'), "data"),
    (("[speed]", "[sped]"), "sped: unknown table"),
    (("seeds = [0]", "seeds = []"), "suite.seeds"),
])
def test_bad_suites_name_the_file_and_key(tmp_path, edit, needle):
    path = write_suite(tmp_path, TINY_SUITE.replace(*edit))
    with pytest.raises(SuiteError) as info:
        load_suite(str(path))
    assert needle in str(info.value) and str(path) in str(info.value)


def test_malformed_toml_and_unknown_suite(tmp_path):
    with pytest.raises(SuiteError, match="malformed TOML"):
        load_suite(str(write_suite(tmp_path, "[suite\nname=")))
    with pytest.raises(SuiteError, match="unknown suite 'nope'"):
        load_suite("nope")


def test_variant_overrides_and_ablations(tmp_path):
    text = TINY_SUITE + ("\n[variants.sas_beta02]\npreset = 'sas'\n"
                         "spec = { beta_ff = { init = 0.2, trainable = true } }\n")
    suite = load_suite(str(write_suite(tmp_path, text)))
    assert suite.optim_for("sas_p").lr == 1e-2 and suite.optim_for("pre_ln").lr == 3e-3
    assert suite.variants["sas_beta02"].preset == "sas"


def test_command_line_overrides_are_recorded_and_validated(tmp_path):
    suite = parse_suite(__import__("tomllib").loads(TINY_SUITE), "tiny")
    changed = suite.with_overrides(budget={"tokens": 1000}, target_loss=3.0, variants=["sas"], seeds=[1, 2])
    assert changed.budget.tokens == 1000 and changed.budget.steps == 6
    assert list(changed.variants) == ["sas"] and changed.seeds == (1, 2)
    assert changed.overrides == {"budget": {"tokens": 1000}, "target_loss": 3.0, "variants": ["sas"], "seeds": [1, 2]}
    for bad in ({"budget": {"steps": 0}}, {"target_loss": 0.0}, {"seeds": [-1]}):
        with pytest.raises(SuiteError):
            suite.with_overrides(**bad)
