"""Reading `diagnose.json` (what `blockbench diagnose` wrote) back: for `report` and `diagnose --replot`.

A results folder may come from someone else, so the file goes through the guarded loader (a regular file: a FIFO
does not hang the reader; a size cap: a 1 GiB file is refused, not read; a depth cap: no RecursionError) and every
field a reader uses is type-checked here, with one line naming the field.
"""

from __future__ import annotations

import math
import os
from typing import Any

from blockbench.blocks.zoo import name_problem
from blockbench.safeio import UnsafeFileError, expect_type, load_json_guarded

# A diagnosis holds two short lists per variant: a few KiB. Far larger is not one.
MAX_DIAGNOSIS_BYTES = 4 * 2**20
MAX_DIAGNOSIS_DEPTH = 8
SERIES = ("cosine", "rms_norm")


def load_diagnosis(path: str | os.PathLike) -> dict[str, Any]:
    """diagnose.json, checked: suite (a name), model.n_layers and model.d_model (positive integers), variants
    (name -> {cosine, rms_norm: non-empty lists of finite numbers}). UnsafeFileError names what is wrong."""
    data = load_json_guarded(path, MAX_DIAGNOSIS_BYTES, MAX_DIAGNOSIS_DEPTH, "diagnose.json")
    expect_type(data, dict, "the top level", path)
    if name_problem(data.get("suite")):
        raise UnsafeFileError(f"{path}: suite {name_problem(data.get('suite'))}")
    model = expect_type(data.get("model"), dict, "model", path)
    for key in ("n_layers", "d_model"):
        if not isinstance(model.get(key), int) or isinstance(model.get(key), bool) or model[key] <= 0:
            raise UnsafeFileError(f"{path}: model.{key} must be a positive integer")
    if "vocab_size" in data:
        expect_type(data["vocab_size"], int, "vocab_size", path)
    for name, values in expect_type(data.get("variants"), dict, "variants", path).items():
        if name_problem(name):
            raise UnsafeFileError(f"{path}: variants: name {name_problem(name)}")
        expect_type(values, dict, f"variants.{name}", path)
        for series in SERIES:
            points = expect_type(values.get(series), list, f"variants.{name}.{series}", path)
            if not points or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                     for v in points):
                raise UnsafeFileError(f"{path}: variants.{name}.{series} must be a non-empty list of numbers")
    return data
