"""Signal propagation at init: naive skip removal collapses token representations; shaped attention does not."""

from blockbench.diagnose import diagnose


def test_rank_collapse_of_naive_skipless_and_not_of_sas():
    result = diagnose(["naive_skipless", "sas", "sas_p", "pre_ln"], "smoke", layers=8)
    cosine = {name: values["cosine"] for name, values in result["variants"].items()}
    assert all(len(values) == 9 for values in cosine.values())
    assert cosine["naive_skipless"][-1] > 0.9
    assert cosine["sas"][-1] < 0.1 and cosine["sas_p"][-1] < 0.1
    assert cosine["sas"][-1] < cosine["pre_ln"][-1] < cosine["naive_skipless"][-1]
