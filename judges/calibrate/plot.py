"""The calibration figure: new vs reference ratings (scatter, jittered) and their confusion heatmap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def plot_ratings(
    path: Path, published: Sequence[float], new: Sequence[float], grid: Mapping[str, Any], *, title: str
) -> Path:
    """Write a two-panel PNG to ``path`` (matplotlib's Agg backend; no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rng = np.random.default_rng(0)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.8))
    jx = np.asarray(published, dtype=float) + rng.uniform(-0.15, 0.15, len(published))
    jy = np.asarray(new, dtype=float) + rng.uniform(-0.15, 0.15, len(new))
    ax1.scatter(jx, jy, s=14, alpha=0.6)
    ax1.plot([0.5, 10.5], [0.5, 10.5], color="grey", linewidth=1, linestyle="--")
    ax1.set(
        xlim=(0.5, 10.5),
        ylim=(0.5, 10.5),
        xlabel="published rating (GPT-4)",
        ylabel="new judge's rating",
        title="ratings of the same answers (jittered)",
    )
    counts = np.asarray(grid["counts"])
    im = ax2.imshow(counts, origin="lower", cmap="Blues", extent=(0.5, 10.5, 0.5, 10.5))
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            if counts[i, j]:
                ax2.text(j + 1, i + 1, str(counts[i, j]), ha="center", va="center", fontsize=7)
    ax2.set(xlabel="new judge's rating", ylabel="published rating", title="confusion (rounded ratings)")
    fig.colorbar(im, ax=ax2, shrink=0.8)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.part")
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
