"""Harness overhead: `Trainer.run()` against a bare hand-written loop on the same model and batches.

Both train the same variant for the same number of steps, alternating A B A B in one process so machine drift
cancels; evaluation is pushed past the budget so only the training loop is compared. Prints the median ratio
harness/bare of training seconds (1.00 = no overhead).

    python ci/overhead.py --suite default --variant pre_ln --steps 30 --rounds 5
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from blockbench.data import load_data
from blockbench.suite import Budget, load_suite
from blockbench.train import Trainer, build_for_suite, make_optimizer


def bare_loop(suite, variant: str, data, steps: int, batches: list) -> float:
    model = build_for_suite(suite, variant, 0, data.vocab_size)
    optim = suite.optim_for(variant)
    optimizer = make_optimizer(model, optim, torch.device("cpu"))
    start = time.perf_counter()
    for x, y in batches[:steps]:
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
    return time.perf_counter() - start


def harness(suite, variant: str, data, static: dict) -> float:
    trainer = Trainer(suite, variant, 0, data, None, static=static)
    trainer.windows = (torch.zeros(1, suite.model.seq_len, dtype=torch.long),) * 2  # evaluation is untimed
    record = trainer.run()
    return record["summary"]["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", default="default")
    parser.add_argument("--variant", default="pre_ln")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    suite = load_suite(args.suite)
    torch.set_num_threads(suite.runtime.threads or torch.get_num_threads())
    suite = dataclasses.replace(suite, budget=Budget(steps=args.steps),
                                eval=dataclasses.replace(suite.eval, every_tokens=10**15),
                                runtime=dataclasses.replace(suite.runtime, warmup_steps=0))
    data = load_data(suite.data)
    probe = Trainer(suite, args.variant, 0, data, None)
    batches = [b for _, b in zip(range(args.steps), probe.batches())]
    bare_loop(suite, args.variant, data, 3, batches)  # warm both paths once
    ratios = []
    for r in range(args.rounds):
        pair = [("bare", lambda: bare_loop(suite, args.variant, data, args.steps, batches)),
                ("harness", lambda: harness(suite, args.variant, data, probe.static))]
        times = dict((name, fn()) for name, fn in (pair if r % 2 == 0 else pair[::-1]))
        ratios.append(times["harness"] / times["bare"])
        print(f"round {r}: bare {times['bare']:.3f} s, harness {times['harness']:.3f} s, "
              f"ratio {ratios[-1]:.4f}", flush=True)
    print(f"median harness/bare ratio over {args.rounds} rounds: {statistics.median(ratios):.4f}")


if __name__ == "__main__":
    main()
