"""Fault injection: what blockbench does when a run, the machine or an input goes wrong.

Every test in test_faults.py is one row of the reliability table in docs/reliability.md: the fault, the exit code,
the one line printed, and what is on disk afterwards. The table is generated from the tests' own `@fault`
declarations (`python -m tests.faults.table`), and a test checks that docs/reliability.md carries exactly that table.
"""
