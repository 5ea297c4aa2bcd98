"""Measures: one function per quantity, the only implementation the CLI, asv, CI and tests use."""
