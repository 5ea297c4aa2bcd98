"""Signal propagation at init: naive skip removal collapses token representations; shaped attention does not."""

from blockbench.diagnose import diagnose


def test_rank_collapse_of_naive_skipless_and_not_of_sas():
    result = diagnose(["naive_skipless", "sas", "sas_p", "pre_ln"], "smoke", layers=8)
    cosine = {name: values["cosine"] for name, values in result["variants"].items()}
    assert all(len(values) == 9 for values in cosine.values())
    assert cosine["naive_skipless"][-1] > 0.9
    assert cosine["sas"][-1] < 0.1 and cosine["sas_p"][-1] < 0.1
    assert cosine["sas"][-1] < cosine["pre_ln"][-1] < cosine["naive_skipless"][-1]


def test_published_diagnosis_replots_identically_with_only_the_suites_variants(tmp_path):
    """results/paper-cpu/1/diagnose.png is what `diagnose --replot` draws from its diagnose.json: the JSON holds
    every preset, the plot only the variants the directory has records of."""
    import json
    import shutil
    from pathlib import Path

    from blockbench.diagnose import replot

    published = Path(__file__).resolve().parents[1] / "results" / "paper-cpu" / "1"
    copy = tmp_path / "1"
    shutil.copytree(published, copy)
    (copy / "diagnose.png").unlink()
    replot(copy)
    assert (copy / "diagnose.png").read_bytes() == (published / "diagnose.png").read_bytes()
    assert "vskipinit_eq4" in json.loads((copy / "diagnose.json").read_text())["variants"]
    assert "vskipinit_eq4" not in (copy / "REPORT.md").read_text()
