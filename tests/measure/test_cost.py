"""The step-cost model (blockbench profile --cost): exact counts that tests can assert, on any machine."""

import json
import tomllib

import pytest
import torch
import torch.nn.functional as F

from blockbench.blocks import shaped
from blockbench.cli import main
from blockbench.data import load_data
from blockbench.measure.components import METRICS
from blockbench.measure.cost import PHASES, RATIO_METRICS, count_cost
from blockbench.step_probe import compare_costs, step_cost
from blockbench.suite import parse_suite
from tests.tiny_suite import TINY_SUITE, write_suite


@pytest.fixture(scope="module")
def tiny():
    suite = parse_suite(tomllib.loads(TINY_SUITE), "tiny")
    return suite, load_data(suite.data)


def test_a_hand_counted_sequence():
    x, w = torch.randn(6), torch.randn(4, 3)
    cost = count_cost(lambda: (x.view(2, 3) @ w.t()).relu().sum(), [w])
    forward = cost["phases"]["forward"]
    # view and t are metadata; mm, relu and sum are one kernel each
    assert cost["top_ops"]["forward"] == [["aten::mm", 1], ["aten::relu", 1], ["aten::sum", 1]]
    assert forward["ops"] == 3 and forward["casts"] == 0 and forward["syncs"] == 0
    assert forward["flops"] == 2 * 2 * 3 * 4
    # non-matmul bytes: relu reads and writes 2x4 floats, sum reads them and writes one
    assert forward["bytes"] == (32 + 32) + (32 + 4)
    assert cost["totals"] == forward  # nothing in the other phases


def test_views_and_allocations_launch_nothing_and_item_is_a_sync():
    x = torch.randn(4, 6)
    cost = count_cost(lambda: (x.view(6, 4), x.t(), x.transpose(0, 1), x[1], x.expand(2, 4, 6), x.detach(),
                               x.reshape(24), x.unsqueeze(0).squeeze(0), torch.empty_like(x), x.chunk(2)))
    assert cost["totals"]["ops"] == 0
    cost = count_cost(lambda: x.sum().item())
    assert cost["totals"]["ops"] == 2 and cost["totals"]["syncs"] == 1


def _linear_relu(dtype):
    torch.manual_seed(0)
    # x needs a gradient, as an activation inside a model does: addmm then saves W too, to compute it
    lin, x = torch.nn.Linear(3, 4), torch.randn(2, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        return count_cost(lambda: F.relu(lin(x)), [*lin.parameters()])["totals"]


def test_bytes_saved_for_backward_of_linear_relu():
    t = _linear_relu(None)
    # addmm saves x (2x3 floats) for W's gradient and W for x's (W is a parameter: not counted), relu its output
    # (2x4 floats)
    assert t["saved_bytes"] == 2 * 3 * 4 + 2 * 4 * 4 and t["saved_weight_bytes"] == 0
    assert t["casts"] == 0 and t["ops"] == 2


def test_casts_and_weight_copies_under_bf16_autocast():
    t = _linear_relu(torch.bfloat16)
    assert t["casts"] == 3  # x, W and b to bf16
    assert t["cast_bytes"] == (24 + 12) + (48 + 24) + (16 + 8)
    # saved: x in bf16, autocast's bf16 copy of W (a weight copy, reported apart), relu's bf16 output
    assert t["saved_bytes"] == 2 * 3 * 2 + 4 * 3 * 2 + 2 * 4 * 2
    assert t["saved_weight_bytes"] == 4 * 3 * 2


@torch.library.custom_op("bbcosttest::chain", mutates_args=())
def _chain(x: torch.Tensor) -> torch.Tensor:
    return (x * 2 + 1).relu()


_chain.register_autograd(lambda ctx, grad: grad * 2)


def test_a_custom_op_counts_its_declared_launches(monkeypatch):
    def run():
        _chain(x.detach().requires_grad_()).sum().backward()  # a new leaf: no gradient to accumulate into

    x = torch.randn(8)

    undeclared = count_cost(run)
    # Not declared: its implementation's chain counts, so wrapping ops in a custom op changes nothing
    assert dict(undeclared["top_ops"]["forward"]) == {"aten::mul": 1, "aten::add": 1, "aten::relu": 1,
                                                      "aten::sum": 1, "aten::ones_like": 1}
    monkeypatch.setattr(shaped, "DECLARED_LAUNCHES", {"bbcosttest::chain": 1})
    declared = count_cost(run)
    assert dict(declared["top_ops"]["forward"]) == {"bbcosttest::chain": 1, "aten::sum": 1, "aten::ones_like": 1}
    assert declared["top_ops"]["backward"] == undeclared["top_ops"]["backward"] == [["aten::mul", 1]]
    # one kernel reads x and writes its output; the three ops dispatched inside it are not counted
    assert declared["totals"]["ops"] == undeclared["totals"]["ops"] - 2
    assert declared["totals"]["bytes"] == undeclared["totals"]["bytes"] - 3 * (32 + 32) + (32 + 32)
    monkeypatch.setattr(shaped, "DECLARED_LAUNCHES", {"bbcosttest::chain": 4})
    assert count_cost(run)["totals"]["ops"] == undeclared["totals"]["ops"] + 1


def test_a_training_step_is_counted_by_phase_and_component(tiny):
    suite, data = tiny
    cost = step_cost(suite, "sas_p", data)
    assert set(cost["phases"]) == set(PHASES) and all(cost["phases"][p]["ops"] > 0 for p in PHASES)
    assert set(cost["totals"]) == set(METRICS)
    assert cost["totals"]["ops"] == sum(row["ops"] for row in cost["components"].values())
    # backward ops go to the component whose forward made them; the optimizer is CUDA's fused AdamW
    assert {"qkv", "shaped", "mlp_up", "head"} <= set(cost["components_by_phase"]["backward"])
    assert ["aten::_fused_adamw_", 2] in cost["top_ops"]["optimizer"]  # two groups: decayed and not
    assert "unmarked" not in cost["components"] and cost["totals"]["syncs"] == 0
    assert cost["totals"]["saved_bytes"] > 0 and cost["totals"]["casts"] == 0  # fp32: nothing to cast


def test_counts_are_deterministic(tiny):
    suite, data = tiny
    first, second = step_cost(suite, "pre_ln", data), step_cost(suite, "pre_ln", data)
    assert first == second


def test_a_block_that_cannot_be_traced_is_reported_and_the_others_counted(tiny):
    from blockbench.blocks import register_block
    from tests.user_blocks import raising_block

    register_block("cost_raising", raising_block, replace=True)
    suite, data = tiny
    suite = suite.with_overrides(variants=["pre_ln", "cost_raising", "sas_p"])
    result = compare_costs(suite, ["pre_ln", "cost_raising", "sas_p"], data, baseline="pre_ln")
    assert result["errors"] == {"cost_raising": "RuntimeError: boom from a user block"}
    assert set(result["costs"]) == {"pre_ln", "sas_p"} and set(result["ratios"]) == {"sas_p"}


def test_cli_cost_json(tmp_path, capsys):
    path = write_suite(tmp_path)
    code = main(["profile", "sas_p", "--compare", "pre_ln", "--cost", "--json", "--suite", str(path),
                 "--dtype", "bf16"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"baseline", "variants", "costs", "errors", "ratios"}
    assert out["baseline"] == "pre_ln" and out["variants"] == ["sas_p", "pre_ln"] and out["errors"] == {}
    assert set(out["ratios"]) == {"sas_p"} and set(out["ratios"]["sas_p"]) == set(RATIO_METRICS)
    for cost in out["costs"].values():
        assert {"variant", "device", "dtype", "autocast", "optimizer", "shape", "batch_size", "totals", "phases",
                "components", "components_by_phase", "top_ops"} <= set(cost)
        assert cost["dtype"] == "bf16" and cost["autocast"] and cost["totals"]["casts"] > 0
        assert set(cost["phases"]) == set(PHASES)
        assert all(set(row) == set(METRICS) for row in cost["components"].values())


def test_cli_cost_table_and_bad_input(tmp_path, capsys):
    path = write_suite(tmp_path)
    assert main(["profile", "sas_p", "--compare", "pre_ln", "--cost", "--suite", str(path)]) == 0
    out = capsys.readouterr().out
    assert "sas_p vs pre_ln: ops " in out and "\nstep " in out
    assert main(["profile", "no_such_block", "--cost", "--suite", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no_such_block" in err
    # a user block that cannot be counted: the others are, and exit 3 says some were not
    code = main(["--block", "tests.user_blocks:raising_block", "profile", "raising_block", "--compare", "pre_ln",
                 "--cost", "--suite", str(path)])
    assert code == 3
    assert "raising_block: not counted: RuntimeError: boom from a user block" in capsys.readouterr().out


def test_the_fused_rms_norm_counts_as_on_cuda_with_the_same_gradients():
    """aten._fused_rms_norm is one CUDA kernel each way, decomposed on CPU: counted as CUDA runs it (1 launch
    forward, 2 backward), saving the input and 1/rms per row, and giving the gradients the CPU op gives."""
    torch.manual_seed(0)
    x, w, g = torch.randn(3, 5, 4, requires_grad=True), torch.randn(4, requires_grad=True), torch.randn(3, 5, 4)
    cost = count_cost(lambda: torch.ops.aten._fused_rms_norm(x, [4], w, 1e-5)[0].backward(g), [w])
    assert cost["top_ops"]["forward"] == [["blockbench_cost::fused_rms_norm", 1]]
    assert cost["top_ops"]["backward"] == [["blockbench_cost::fused_rms_norm_backward", 2]]
    assert cost["totals"]["saved_bytes"] == 3 * 5 * 4 * 4 + 3 * 5 * 4
    counted = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    torch.ops.aten._fused_rms_norm(x, [4], w, 1e-5)[0].backward(g)
    torch.testing.assert_close(counted, (x.grad, w.grad))
