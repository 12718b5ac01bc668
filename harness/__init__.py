"""ditto-bench harness: rollout, judging, caching and run records for role-play benchmarks."""

__version__ = "0.1.0"
