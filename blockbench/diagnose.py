"""Signal propagation at initialisation, on real batches: the paper's argument, measured.

For every block's output (layer 0 = the embeddings), the mean cosine similarity between the representations of
different tokens of a sequence (-> 1 is rank collapse: every token looks the same) and the RMS activation norm.
Skipless blocks without shaped attention collapse with depth; shaped attention keeps tokens apart.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any

import torch

from blockbench.data import load_data
from blockbench.errors import BlockbenchError
from blockbench.safeio import atomic_write_bytes, atomic_write_text
from blockbench.suite import load_suite
from blockbench.train import build_for_suite
from blockbench.views.diagnosis import load_diagnosis
from blockbench.views.plotstyle import variant_style
from blockbench.views.selection import load_entries, records_dir

# The init fact users meet first (issue 23): a SAS-family model starts at a loss far above ln(V).
EMBEDDING_STD = 0.02  # the presets' N(0, 0.02^2) embedding init (blocks/zoo.py)
AUTHORS_STEP0_LOSS = 10.57  # the authors' code (bobby-he/simplified_transformers), SAS at L=18, d=768


def identity_at_init(block_spec: dict[str, Any] | None) -> bool:
    """Whether a block is (about) the identity on its normalised input at initialisation: shaped attention with
    W^Q = 0 (so A equals the centring matrix C and alpha I + beta A - gamma C is the identity) and identity W^V,
    W^P: the SAS family (sas, sas_p, sas_p_nonorm), not V-SkipInit (orthogonal W^V, W^P)."""
    return bool(block_spec) and block_spec.get("attention") == "shaped" and block_spec.get("value") == "identity" \
        and block_spec.get("proj") == "identity" and not block_spec.get("query_init_std")


def init_loss_note(block_spec: dict[str, Any] | None, d_model: int, vocab_size: int) -> str | None:
    """Why this variant's step-0 loss is far above ln(V), with the figure for this width; None when it is not."""
    if not identity_at_init(block_spec):
        return None
    logit = d_model * EMBEDDING_STD / math.sqrt(2)
    return (f"step-0 loss about {logit:.1f}, not ln V = {math.log(vocab_size):.1f}: at init each block is the "
            "identity on its normalised input (W^Q = 0, W^V = W^P = I), so the last block passes the normalised "
            "token + position embedding through, and with the tied head the input token's own logit is about "
            f"d*sigma/sqrt(2) = {d_model}*{EMBEDDING_STD}/sqrt(2) = {logit:.1f}. Faithful to the authors' code "
            f"(their model gives {AUTHORS_STEP0_LOSS} at L=18, d=768); the loss falls within the first steps")


@torch.no_grad()
def signal_propagation(model: torch.nn.Module, inputs: torch.Tensor) -> dict[str, list[float]]:
    """Per layer: mean off-diagonal token cosine similarity and RMS norm of the residual stream."""
    seq = inputs.shape[1]
    outputs = [model.embed(inputs)]
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


def diagnose(variants: list[str] | None, suite_name: str, layers: int | None, batch: int = 8,
             workload: str | None = None) -> dict[str, Any]:
    """Signal propagation of `variants` (None: the suite's own) at the suite's shape, `layers` deep, built for
    the suite's workload (or `workload`): its attention mask and head, on its evaluation windows (masked ones for
    a masked workload)."""
    suite = load_suite(suite_name).with_overrides(variants=variants)
    if workload is not None and workload != suite.workload:
        suite = dataclasses.replace(suite, workload=workload, workload_options={})
    if layers is not None:
        if layers <= 0:
            raise BlockbenchError(f"--layers must be positive, got {layers}")
        suite = dataclasses.replace(suite, model=dataclasses.replace(suite.model, n_layers=layers))
    data = load_data(suite.data)
    inputs, _ = suite.get_workload().eval_windows(data, suite.model.seq_len, batch)
    result = {"suite": suite.name, "model": suite.model.shape(), "batch": list(inputs.shape),
              "vocab_size": data.vocab_size, "variants": {}}
    if not suite.get_workload().is_default:  # the default workload's diagnoses read as they always have
        result["workload"] = suite.workload
    for name in suite.variants:
        model = build_for_suite(suite, name, suite.seeds[0], data.vocab_size)
        result["variants"][name] = signal_propagation(model, inputs)
    return result


def coinciding(variants: dict[str, dict[str, list[float]]], key: str, close) -> list[list[str]]:
    """Groups of two or more variants whose `key` curves are `close` at every layer, each in the given order."""
    groups: list[list[str]] = []
    for name, values in variants.items():
        for group in groups:
            if all(close(a, b) for a, b in zip(variants[group[0]][key], values[key])):
                group.append(name)
                break
        else:
            groups.append([name])
    return [g for g in groups if len(g) > 1]


OFFSET = 0.08  # layers between neighbouring series: coinciding curves are drawn side by side, not on top


def plot(result: dict[str, Any], path: Path) -> None:
    """Both measures per layer. Several variants often coincide exactly (every shaped-attention block keeps its
    tokens apart): each series has its own colour and marker and is shifted sideways by a fraction of a layer,
    and the legend sits outside the axes, so every series stays visible."""
    from matplotlib.figure import Figure  # deferred: about a second to import, and only the plot needs it

    names = list(result["variants"])
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    ax_cos, ax_norm = fig.subplots(1, 2)
    for i, name in enumerate(names):
        values = result["variants"][name]
        shift = (i - (len(names) - 1) / 2) * OFFSET
        layers = [layer + shift for layer in range(len(values["cosine"]))]
        style = variant_style(name, names)  # the colour this variant has on every page
        ax_cos.plot(layers, values["cosine"], markersize=5, linewidth=1.2, label=name, **style)
        ax_norm.plot(layers, values["rms_norm"], markersize=5, linewidth=1.2, **style)
    ax_cos.set(xlabel="layer (0 = embeddings)", ylabel="mean cosine similarity between tokens",
               title="rank collapse at initialisation (1 = every token alike)", ylim=(-0.05, 1.05))
    ax_norm.set(xlabel="layer (0 = embeddings)", ylabel="RMS activation (log scale)", title="activation norm",
                yscale="log")
    # The label goes on the side of the group's curves away from the panel's edge (cosine groups lie near 0,
    # norm groups near the top of a log axis).
    for ax, key, close, below in ((ax_cos, "cosine", lambda a, b: abs(a - b) <= 0.01, False),
                                  (ax_norm, "rms_norm", lambda a, b: abs(a - b) <= 0.02 * max(abs(a), abs(b)), True)):
        ax.grid(True, alpha=0.3)
        for group in coinciding(result["variants"], key, close):
            last = [result["variants"][name][key][-1] for name in group]
            ax.annotate("coincide: " + ", ".join(group),
                        (len(result["variants"][group[0]][key]) - 1, min(last) if below else max(last)),
                        xytext=(0, -10 if below else 8), textcoords="offset points", ha="right",
                        va="top" if below else "bottom", fontsize="small", color="dimgrey")
    fig.legend(loc="outside right upper", fontsize="small", title="variant")
    fig.suptitle(f"signal propagation at init, suite {result['suite']}, L={result['model']['n_layers']}, "
                 f"d={result['model']['d_model']}")
    fig.supxlabel(f"Series are shifted sideways by {OFFSET} layer each so that coinciding ones stay visible; "
                  "every point belongs to a whole layer.", fontsize="small", color="dimgrey")
    buffer = io.BytesIO()  # rendered in memory, then written atomically: never through a link at `path`
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue(), "plot")


def replot(directory: Path) -> Path:
    """Redraw directory/diagnose.png from its diagnose.json without building a model, keeping only the variants
    that have run records in the directory (a diagnosis of every preset beside a suite that ran fewer would show
    blocks the results say nothing about)."""
    source = directory / "diagnose.json"
    try:  # the guarded loader: regular file, size and depth caps, every field plot reads type-checked
        result = load_diagnosis(source)
    except BlockbenchError as exc:
        raise BlockbenchError(f"{exc}; rerun blockbench diagnose") from None
    variants = result["variants"]
    if records_dir(directory) != directory:
        ran = {record["variant"] for _, record in load_entries(directory)}
        result["variants"] = {name: values for name, values in variants.items() if name in ran}
    try:
        plot(result, directory / "diagnose.png")
    except OSError as exc:
        raise BlockbenchError(f"{directory}: cannot write diagnose.png ({exc.strerror})") from None
    return directory / "diagnose.png"


def write_diagnosis(result: dict[str, Any], out: Path) -> None:
    """OUT/diagnose.json and OUT/diagnose.png, each written atomically; an unwritable OUT is a BlockbenchError."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "diagnose.json", json.dumps(result, indent=1) + "\n", "diagnose.json")
        plot(result, out / "diagnose.png")
    except OSError as exc:
        raise BlockbenchError(f"--out {out}: cannot write ({exc.strerror})") from None
