"""Leaderboard tables built from run records, and paired comparisons of runs.

``definition`` (columns and published sets, JSON files in this package), ``runs`` (reading run records),
``board`` (the table, with column-compatibility checks), ``render`` (Markdown, CSV, LaTeX, HTML),
``compare`` (paired bootstrap and Wilcoxon), ``cli`` (``ditto-bench leaderboard`` / ``compare``).
"""
