"""A tiny suite (raw bytes of the embedded corpus, a 1-block model, a few steps) for harness tests."""

from pathlib import Path

TINY_SUITE = """
[suite]
name = "tiny"
version = "1"
baseline = "pre_ln"
seeds = [0]

[model]
n_layers = 1
d_model = 32
n_heads = 2
seq_len = 32

[data]
corpus = "sympy"
tokenizer = "bytes"

[optim]
lr = 3e-3
batch_size = 4

[budget]
steps = 6

[eval]
every_tokens = 256
windows = 4
target_loss = 4.5

[runtime]
threads = 2
warmup_steps = 1

[speed]
rounds = 3
steps_per_round = 1

[variants.pre_ln]
[variants.sas_p]
lr = 1e-2
"""


def write_suite(directory: Path, text: str = TINY_SUITE, name: str = "tiny.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def with_runtime(suite, **changes):
    """The suite with runtime fields replaced (dtype, cuda_graphs, compile, ...), as a test needs them."""
    import dataclasses

    return dataclasses.replace(suite, runtime=dataclasses.replace(suite.runtime, **changes))
