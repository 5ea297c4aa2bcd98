"""Signal propagation at initialisation, on real batches: the paper's argument, measured.

For every block's output (layer 0 = the embeddings), the mean cosine similarity between the representations of
different tokens of a sequence (-> 1 is rank collapse: every token looks the same) and the RMS activation norm.
Skipless blocks without shaped attention collapse with depth; shaped attention keeps tokens apart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from blockbench.errors import BlockbenchError


@torch.no_grad()
def signal_propagation(model: torch.nn.Module, inputs: torch.Tensor) -> dict[str, list[float]]:
    """Per layer: mean off-diagonal token cosine similarity and RMS norm of the residual stream."""
    seq = inputs.shape[1]
    outputs = [model.tok_emb(inputs) + model.pos_emb(torch.arange(seq))]
    hooks = [block.register_forward_hook(lambda m, i, o: outputs.append(o)) for block in model.blocks]
    model.eval()
    model(inputs)
    for hook in hooks:
        hook.remove()
    off_diagonal = ~torch.eye(seq, dtype=torch.bool)
    cosine, norm = [], []
    for x in outputs:
        unit = torch.nn.functional.normalize(x.float(), dim=-1)
        similarity = unit @ unit.transpose(1, 2)
        cosine.append(float(similarity[:, off_diagonal].mean()))
        norm.append(float(x.float().pow(2).mean(-1).sqrt().mean()))
    return {"cosine": cosine, "rms_norm": norm}


def diagnose(variants: list[str], suite_name: str, layers: int | None, batch: int = 8) -> dict[str, Any]:
    from blockbench.data import eval_windows, load_data
    from blockbench.suite import load_suite
    from blockbench.train import build_for_suite

    suite = load_suite(suite_name).with_overrides(variants=variants)
    if layers is not None:
        if layers <= 0:
            raise BlockbenchError(f"--layers must be positive, got {layers}")
        import dataclasses

        suite = dataclasses.replace(suite, model=dataclasses.replace(suite.model, n_layers=layers))
    data = load_data(suite.data)
    inputs, _ = eval_windows(data, suite.model.seq_len, batch)
    result = {"suite": suite.name, "model": vars(suite.model), "batch": list(inputs.shape), "variants": {}}
    for name in suite.variants:
        model = build_for_suite(suite, name, suite.seeds[0], data.vocab_size)
        result["variants"][name] = signal_propagation(model, inputs)
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_cos, ax_norm) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, values in result["variants"].items():
        layers = range(len(values["cosine"]))
        ax_cos.plot(layers, values["cosine"], marker="o", ms=3, label=name)
        ax_norm.plot(layers, values["rms_norm"], marker="o", ms=3, label=name)
    ax_cos.set(xlabel="layer (0 = embeddings)", ylabel="mean cosine similarity between tokens",
               title="rank collapse at initialisation", ylim=(-0.05, 1.05))
    ax_norm.set(xlabel="layer (0 = embeddings)", ylabel="RMS activation", title="activation norm", yscale="log")
    ax_cos.legend(fontsize=7)
    fig.suptitle(f"signal propagation at init, suite {result['suite']}, L={result['model']['n_layers']}, "
                 f"d={result['model']['d_model']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def cmd_diagnose(args: argparse.Namespace) -> int:
    from blockbench.blocks import PRESETS

    variants = [v.name for v in PRESETS] if args.variant == "all" else [args.variant]
    result = diagnose(variants, args.suite, args.layers)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "diagnose.json").write_text(json.dumps(result, indent=1) + "\n")
        plot(result, out / "diagnose.png")
    except OSError as exc:
        raise BlockbenchError(f"--out {out}: cannot write ({exc.strerror})") from None
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for name, values in result["variants"].items():
            print(f"{name:16s} cosine at last layer {values['cosine'][-1]:.3f}   RMS {values['rms_norm'][-1]:.3f}")
        print(f"wrote {out / 'diagnose.json'} and {out / 'diagnose.png'}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("diagnose", help="signal propagation at init: token cosine similarity and norm per layer")
    p.add_argument("variant", nargs="?", default="all", help="a variant, or 'all' presets (default)")
    p.add_argument("--suite", default="default", help="model shape and data come from this suite")
    p.add_argument("--layers", type=int, default=16, help="depth to diagnose (default 16)")
    p.add_argument("--out", default="diagnose", help="directory for diagnose.json and diagnose.png")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_diagnose)
