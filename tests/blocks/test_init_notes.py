"""Issue 23: why SAS/SAS-P start at ~10.7 nats at d=768, said where users look (show, notes, diagnose)."""

import json
import math

from blockbench.blocks import get_variant
from blockbench.cli import main
from blockbench.diagnose import identity_at_init, init_loss_note


def test_the_sas_family_and_only_it_carries_the_init_fact():
    for name in ("sas", "sas_p", "sas_p_nonorm"):
        spec = get_variant(name).spec.to_dict()
        assert identity_at_init(spec), name
        assert "10.57" in get_variant(name).notes and "d*sigma/sqrt(2)" in get_variant(name).notes
    for name in ("pre_ln", "vskipinit", "parallel", "naive_skipless"):
        assert not identity_at_init(get_variant(name).spec.to_dict()), name
    note = init_loss_note(get_variant("sas").spec.to_dict(), 768, 4096)
    assert f"{768 * 0.02 / math.sqrt(2):.1f}" == "10.9" and "10.9" in note and "ln V = 8.3" in note
    assert "10.57" in note


def test_show_says_it_at_the_shape_shown(capsys):
    assert main(["show", "sas_p", "--width", "256", "--heads", "4", "--layers", "2", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert f"{256 * 0.02 / math.sqrt(2):.1f}" in info["init_loss_note"]
    assert main(["show", "pre_ln", "--layers", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["init_loss_note"] is None
