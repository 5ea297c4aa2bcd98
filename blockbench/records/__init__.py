"""The run record: one JSON file per (variant, seed), written once, atomically, never modified.

schema.py is the schema and its validation (the one place it lives), store.py reads and writes records, failure
files and the probe file, build.py turns a measured run (RunTally) into a record. The names below are the public
interface every view, executor and script imports from `blockbench.records`.
"""

from blockbench.records.build import STATIC_KEYS, RunTally, build_record, data_section, to_target
from blockbench.records.schema import (
    CURVE_POINT,
    EXECUTION_MODES,
    FAILURE_KEYS,
    FAILURE_SCHEMA_VERSION,
    MFU_PEAK_SOURCES,
    OPTIONAL_KEYS,
    READABLE_SCHEMA_VERSIONS,
    SCHEMA_VERSION,
    SECTIONS,
    STATUSES,
    TOKENIZATION_FIELDS,
    TOP_LEVEL,
    RecordError,
    comparable_overrides,
    content_digest,
    device_types,
    execution_mode,
    execution_modes,
    tokenization,
    tokenization_difference,
    validate_failure,
    validate_record,
)
from blockbench.records.store import (
    PROBE_SCHEMA_VERSION,
    contained,
    failure_filename,
    find_record_files,
    load_failure,
    load_failures,
    load_probe,
    load_record,
    load_records,
    read_json,
    record_filename,
    remove_stale_temp_files,
    seal,
    write_failure,
    write_probe,
    write_record,
)

__all__ = ["CURVE_POINT", "EXECUTION_MODES", "FAILURE_KEYS", "FAILURE_SCHEMA_VERSION", "MFU_PEAK_SOURCES",
           "OPTIONAL_KEYS", "PROBE_SCHEMA_VERSION", "READABLE_SCHEMA_VERSIONS", "SCHEMA_VERSION", "SECTIONS",
           "STATIC_KEYS", "STATUSES", "TOKENIZATION_FIELDS", "TOP_LEVEL", "RecordError", "RunTally", "build_record",
           "comparable_overrides", "contained", "content_digest", "data_section", "device_types", "execution_mode",
           "execution_modes", "failure_filename", "find_record_files", "load_failure", "load_failures", "load_probe",
           "load_record", "load_records", "read_json", "record_filename", "remove_stale_temp_files", "seal",
           "tokenization", "tokenization_difference", "to_target", "validate_failure", "validate_record",
           "write_failure", "write_probe", "write_record"]
