"""PNG plots (matplotlib, Agg backend): accuracy against eps for every attack and for
verification, and the verifier's cactus plot (inputs decided against solve time)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from robustbench_mr.reports.tables import CheckpointRows

DECIDED = ("verified", "falsified", "misclassified")


def accuracy_curves(ck: CheckpointRows) -> dict[str, list[tuple[float, float, int]]]:
    """label -> sorted [(eps, accuracy %, n)] for each (kind, method, norm) of a checkpoint."""
    buckets: dict[tuple[str, str, str, float], dict[int, bool]] = defaultdict(dict)
    for r in ck.rows:
        ok = r.status == ("verified" if r.kind == "verify" else "robust")
        d = buckets[(r.kind, r.method, r.norm, r.eps)]
        # several rows per input (verify methods): robust if any verify method proved it;
        # for attacks each (method, eps) has one row per input
        d[r.idx] = d.get(r.idx, False) or ok
    curves: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for (kind, method, norm, eps), d in buckets.items():
        label = f"{'verified' if kind == 'verify' else method} ({norm})"
        curves[label].append((eps, 100.0 * sum(d.values()) / len(d), len(d)))
    return {k: sorted(v) for k, v in sorted(curves.items())}


def decided_curve(ck: CheckpointRows) -> dict[str, list[tuple[float, int]]]:
    """method -> [(seconds, number of inputs decided within that time)] for verify rows."""
    out: dict[str, list[tuple[float, int]]] = {}
    by_method: dict[str, list[float]] = defaultdict(list)
    for r in ck.rows:
        if r.kind == "verify" and r.status in DECIDED and r.seconds is not None:
            by_method[f"{r.method} {r.norm} {r.eps:.4g}"].append(r.seconds)
    for m, times in sorted(by_method.items()):
        ts = sorted(times)
        out[m] = [(t, i + 1) for i, t in enumerate(ts)]
    return out


def plot_accuracy_vs_eps(groups: list[CheckpointRows], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norms = sorted({r.norm for g in groups for r in g.rows}) or ["linf"]
    fig, axes = plt.subplots(1, len(norms), figsize=(5 * len(norms), 4), squeeze=False)
    for ax, norm in zip(axes[0], norms):
        for g in groups:
            for label, pts in accuracy_curves(g).items():
                if not label.endswith(f"({norm})"):
                    continue
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                ax.plot(xs, ys, marker="o", label=f"{g.name}: {label}")
        ax.set_xlabel(f"eps ({norm}, pixel units)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:  # noqa: ANN001 - a matplotlib Figure
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_decided_vs_time(groups: list[CheckpointRows], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for g in groups:
        for method, pts in decided_curve(g).items():
            ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", label=f"{g.name}: {method}")
    ax.set_xlabel("solve time per input (s)")
    ax.set_ylabel("inputs decided")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _save(fig, path)
