"""``ditto-bench view``: one self-contained HTML file to read runs, compare them and browse sweeps."""

# The page `ditto-bench view RUN_DIR` writes by default; the HTML leaderboard links run rows to it.
VIEW_FILE = "view.html"
