"""asv benchmarks for blockbench (see asv.conf.json and README "Tracking over commits").

Modules: step_time (time_*), static (params, FLOPs), training (peak memory, eval loss, interleaved speed
ratio).
`common` holds the shared tiny suite and defines no benchmarks.
"""
