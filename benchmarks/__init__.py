"""asv benchmarks for blockbench (see asv.conf.json and docs/tracking.md).

Modules: step_time (time_*), static (params, FLOPs), training (peak memory, eval loss, interleaved speed
ratio), shaped (SAS-P / Pre-LN interleaved ratio at d=256; shaped attention forward + backward alone), host
(each variant's step time against Pre-LN's where the step is host time, eager and compiled).
`common` holds the shared tiny suite and defines no benchmarks.
"""
