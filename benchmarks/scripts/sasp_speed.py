"""SAS-P / Pre-LN step-time ratio at the issue-15 shapes, and Pre-LN against a plain nanoGPT-style loop.

All three steps are timed interleaved in one process (blockbench.step_probe.speed_ratio, the speed
probe's own timing path), so machine drift common to a round cancels. Prints, per width, the median over
rounds of pre_ln_time / sas_p_time and nanogpt_time / pre_ln_time with their IQR; never absolute seconds as a
verdict.

    python benchmarks/scripts/sasp_speed.py --width 256 --width 512 --rounds 12 [--modern] [--json out.json]

The nanoGPT-style reference is the same Pre-LN model (RMSNorm, fused QKV, SDPA, ReLU MLP, no biases, tied
head) written as one plain module and trained by a bare loop (AdamW, grad clip, zero_grad): if blockbench's
pre_ln step is slower than it, the harness or the block code costs something a hand-written model does not.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch
import torch.nn.functional as F
from torch import nn

from blockbench.data import load_data
from blockbench.measure.flops import count_flops
from blockbench.step_probe import harness_step, speed_ratio, suite_at_shape
from blockbench.suite import load_suite


class NanoBlock(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = nn.Parameter(torch.ones(d)), nn.Parameter(torch.ones(d))
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.up = nn.Linear(d, 4 * d, bias=False)
        self.down = nn.Linear(4 * d, d, bias=False)
        for p in (self.qkv, self.proj, self.up, self.down):
            nn.init.normal_(p.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(F.rms_norm(x, (d,), self.n1, 1e-5)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.down(F.relu(self.up(F.rms_norm(x, (d,), self.n2, 1e-5))))


class NanoGPT(nn.Module):
    def __init__(self, vocab: int, t: int, d: int, layers: int, heads: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(t, d)
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)
        self.blocks = nn.ModuleList(NanoBlock(d, heads) for _ in range(layers))
        self.norm = nn.Parameter(torch.ones(d))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        logits = F.linear(F.rms_norm(x, (x.shape[-1],), self.norm, 1e-5), self.tok.weight)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def nanogpt_step(suite, vocab: int, x: torch.Tensor, y: torch.Tensor):
    m = suite.model
    torch.manual_seed(0)
    model = NanoGPT(vocab, m.seq_len, m.d_model, m.n_layers, m.n_heads)
    o = suite.optim_for("pre_ln")
    params = [p for p in model.parameters()]
    optimizer = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": o.weight_decay},
                                   {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                                  lr=o.lr, betas=o.betas, eps=o.eps)

    def step() -> torch.Tensor:
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def unfused(step):
    """Put the step's model back on the plain-ops shaped path that blockbench used before issue 15 (seven
    element-wise passes forward, autograd's backward, beta_SA and beta_FF as separate products): the same math,
    so the 'before' code is timed interleaved with the 'after' code in this process."""
    import types

    from blockbench.blocks.shaped import mix_formula

    def attn_forward(self, x, key_mask=None, scale=None):
        batch, seq, dim = x.shape
        q, k = self.qkv(x).split(dim, dim=-1)
        v = x if self.value is None else self.value(x)
        q, k = self.add_qk_bias(q, k)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out = mix_formula(out, v, self.alpha, self.beta, self.gamma)  # uncompiled: autograd's backward
        out = out.transpose(1, 2).reshape(batch, seq, dim)
        return out if self.proj is None else self.proj(out)

    def block_forward(self, x, key_mask=None):
        h = self.norm1(x)
        branches = self.scaled("beta_sa", self.attn(h)) + self.scaled("beta_ff", self.mlp(h))
        return self.with_skip("alpha_ff", branches, x)

    for block in step.trainer.model.blocks:
        assert block.spec.layout == "parallel" and block.attn.kind == "shaped"
        block.forward = types.MethodType(block_forward, block)
        block.attn.forward = types.MethodType(attn_forward, block.attn)
    return step


MODERN = ("transformer_pp", "sas_p_pp")


def measure(width: int, args: argparse.Namespace, data) -> dict:
    names = ["pre_ln", "sas_p", *(MODERN if args.modern else ())]
    suite = suite_at_shape(load_suite(args.suite), names, n_layers=args.layers, d_model=width,
                           n_heads=args.heads, seq_len=args.seq_len, batch_size=args.batch, threads=args.threads)
    steps = {name: harness_step(suite, name, data) for name in names}
    if args.before:
        steps["sas_p_before"] = unfused(harness_step(suite, "sas_p", data))
    if args.compile_shaped:
        compiled = dataclasses.replace(suite, runtime=dataclasses.replace(suite.runtime, compile_shaped=True))
        steps["sas_p_compiled_mix"] = harness_step(compiled, "sas_p", data)
        steps["sas_p_compiled_mix"]()  # compiles here, before the timed rounds
    compile_seconds = {}
    if args.compile:
        import time

        for name in ("pre_ln", "sas_p"):
            step = harness_step(suite, name, data)
            step.trainer.step_model = torch.compile(step.trainer.model, dynamic=False)
            start = time.perf_counter()
            step()  # compilation happens here, outside the timed rounds
            compile_seconds[name] = time.perf_counter() - start
            steps[f"{name}_compiled"] = step
    x, y = next(steps["pre_ln"].trainer.batches())
    if not args.no_nanogpt:
        steps["nanogpt"] = nanogpt_step(suite, data.vocab_size, x, y)
    result = speed_ratio(steps, "pre_ln", args.rounds, args.steps_per_round)
    out = {"width": width, "layers": args.layers, "heads": args.heads, "seq_len": args.seq_len,
           "batch": args.batch, "threads": torch.get_num_threads(), "rounds": args.rounds,
           "steps_per_round": args.steps_per_round,
           "sas_p_over_pre_ln": _ratio(result["sas_p"])}
    if "sas_p_before" in result:
        out["sas_p_before_over_pre_ln"] = _ratio(result["sas_p_before"])
    if "sas_p_compiled_mix" in result:
        out["sas_p_compiled_mix_over_pre_ln"] = _ratio(result["sas_p_compiled_mix"])
    for name in compile_seconds:
        # compiled speed-up over the same variant in eager mode, per round
        eager = result[name]["ratios"]
        out[f"{name}_compiled_over_eager"] = _ratio({"ratios": [c / e for c, e in
                                                                 zip(result[f"{name}_compiled"]["ratios"], eager)]})
        out[f"{name}_compile_seconds"] = compile_seconds[name]
    if args.modern:
        flops = {n: count_flops(steps[n].trainer.model, use_fvcore=False)["flops_train_per_token"] for n in names}
        # transformer_pp against pre_ln, and sas_p_pp against transformer_pp: per round, the ratio of ratios
        for name, ref in (("transformer_pp", "pre_ln"), ("sas_p_pp", "transformer_pp")):
            ref_ratios = result[ref]["ratios"] if ref != "pre_ln" else [1.0] * len(result[name]["ratios"])
            out[f"{name}_over_{ref}"] = {**_ratio({"ratios": [a / b for a, b in zip(result[name]["ratios"],
                                                                                    ref_ratios)]}),
                                         "flop_ratio": flops[ref] / flops[name]}
    if "nanogpt" in result:
        # nanogpt_time / pre_ln_time: the inverse of the probe's ratio, per round
        inv = [1 / r for r in result["nanogpt"]["ratios"]]
        out["pre_ln_over_nanogpt"] = _ratio({"ratios": inv})
    return out


def _ratio(entry: dict) -> dict:
    import statistics

    ratios = entry["ratios"]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return {"median": statistics.median(ratios), "q1": q1, "q3": q3, "iqr": q3 - q1, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="paper-cpu")
    parser.add_argument("--width", type=int, action="append", help="d_model; repeatable (default 256, 512)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps-per-round", type=int, default=2)
    parser.add_argument("--no-nanogpt", action="store_true", help="skip the nanoGPT-style reference loop")
    parser.add_argument("--before", action="store_true",
                        help="also time SAS-P on the pre-issue-15 plain-ops path (same math), interleaved")
    parser.add_argument("--compile-shaped", action="store_true",
                        help="also time SAS-P with runtime.compile_shaped (only the shaped mix compiled)")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile'd pre_ln and sas_p (compiled once, before the rounds)")
    parser.add_argument("--modern", action="store_true",
                        help="also time transformer_pp (against pre_ln) and sas_p_pp (against transformer_pp), "
                             "each beside its training-FLOP ratio")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_data(load_suite(args.suite).data)
    results = []
    for width in args.width or [256, 512]:
        r = measure(width, args, data)
        results.append(r)
        line = (f"d={width}: SAS-P/Pre-LN speedup {r['sas_p_over_pre_ln']['median']:.3f} "
                f"(IQR {r['sas_p_over_pre_ln']['q1']:.3f}-{r['sas_p_over_pre_ln']['q3']:.3f}, {args.rounds} rounds)")
        if "sas_p_before_over_pre_ln" in r:
            o = r["sas_p_before_over_pre_ln"]
            line += f"; before issue 15: {o['median']:.3f} (IQR {o['q1']:.3f}-{o['q3']:.3f})"
        if "sas_p_compiled_mix_over_pre_ln" in r:
            o = r["sas_p_compiled_mix_over_pre_ln"]
            line += f"; with the shaped mix compiled: {o['median']:.3f} (IQR {o['q1']:.3f}-{o['q3']:.3f})"
        for name in ("pre_ln", "sas_p"):
            if f"{name}_compiled_over_eager" in r:
                c = r[f"{name}_compiled_over_eager"]
                line += (f"; {name} compiled/eager {c['median']:.3f} (IQR {c['q1']:.3f}-{c['q3']:.3f}, compile "
                         f"{r[f'{name}_compile_seconds']:.0f} s)")
        for key in ("transformer_pp_over_pre_ln", "sas_p_pp_over_transformer_pp"):
            if key in r:
                o = r[key]
                line += (f"; {key.replace('_over_', '/')} {o['median']:.3f} (IQR {o['q1']:.3f}-{o['q3']:.3f}; "
                         f"FLOP ratio {o['flop_ratio']:.3f})")
        if "pre_ln_over_nanogpt" in r:
            n = r["pre_ln_over_nanogpt"]
            line += f"; Pre-LN vs nanoGPT loop {n['median']:.3f} (IQR {n['q1']:.3f}-{n['q3']:.3f})"
        print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
