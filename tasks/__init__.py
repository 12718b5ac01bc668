"""Benchmark definitions (WikiRoleEval, MT-Bench)."""
