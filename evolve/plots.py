"""Figures of a search (matplotlib, saved as PNG, no display needed)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_history", "plot_pareto", "save_plots"]


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_history(result, path: str | Path) -> Path:
    """Best (population) and median (generation) of each objective per generation."""
    plt = _figure()
    names = result.objectives
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    generations = [r["generation"] for r in result.history]
    for ax, name in zip(axes[0], names, strict=True):
        for key, style in (("best", "-o"), ("median", "--s")):
            values = [r[key].get(name, float("nan")) for r in result.history]
            ax.plot(generations, values, style, label=key, markersize=3)
        ax.set_xlabel("generation")
        ax.set_ylabel(name)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_pareto(result, path: str | Path) -> Path:
    """All successful candidates and the Pareto front, primary objective against each other."""
    plt = _figure()
    names = result.objectives
    others = names[1:] or names
    fig, axes = plt.subplots(1, len(others), figsize=(4.5 * len(others), 3.5), squeeze=False)
    ok = [r for r in result.candidates if r["status"] == "ok"]
    front = {c.id for c in result.pareto}
    for ax, other in zip(axes[0], others, strict=True):
        ax.scatter(
            [r["scores"][other] for r in ok],
            [r["scores"][names[0]] for r in ok],
            s=10,
            c="lightgray",
            label="candidates",
        )
        points = sorted(
            (c.scores[other], c.scores[names[0]]) for c in result.pareto if c.id in front
        )
        if points:
            xs, ys = zip(*points, strict=True)
            ax.step(xs, ys, "-o", where="post", color="C3", label="Pareto front", markersize=4)
        ax.set_xlabel(other)
        ax.set_ylabel(names[0])
        if other in ("flops", "parameters", "energy", "latency"):
            ax.set_xscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def save_plots(result, folder: str | Path) -> list[Path]:
    """Write ``history.png`` and ``pareto.png`` into ``folder``."""
    folder = Path(folder)
    if not result.history:
        return []
    return [
        plot_history(result, folder / "history.png"),
        plot_pareto(result, folder / "pareto.png"),
    ]
