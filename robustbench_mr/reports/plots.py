"""PNG plots (matplotlib, Agg backend) a reader can trust.

``accuracy_vs_eps``: one panel per (dataset, split, threat model). Each checkpoint is a *band*
per input set: its lower edge is verified accuracy (a lower bound on robust accuracy: proved
by the exact verifier), its upper edge attacked accuracy (an upper bound: inputs no attack
broke), the shade between them is what is not known. Inputs the verifier left undecided
(timeout / unknown / error) that no attack broke are a hatched shade of their own on top of the
verified edge (the rest of the band: inputs the verifier falsified but the attacks missed),
never folded into "not verified". At each eps the band is computed on the inputs both
verified and attacked there (or those of whichever ran); points computed on different input
sets are different bands, never joined (a band at a single eps is a bar; bars at the same eps
stand side by side). Every band's legend entry gives its input set and n, once under its
checkpoint's file name; the panel title gives the dataset; eps ticks are fractions where they
are multiples of 1/255, and the clean accuracy is a star at eps 0.

``decided_vs_time``: the verifier's cactus plot, inputs decided within a solve time, with the
number of inputs and of undecided ones per curve, and the time limit.

The ``*_figure`` functions return the matplotlib Figure (tests inspect its artists); the
``plot_*`` functions save it as PNG. Artists carry a ``gid`` ("band", "verified", "attacked",
"undecided", "clean") so they can be found again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from robustbench_mr.reports.tables import UNDECIDED, CheckpointRows, Setting, eps_text

DECIDED = ("verified", "falsified", "misclassified", "not_robust")
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")


@dataclass(frozen=True)
class BandPoint:
    """One eps of a band, as percentages of the ``n`` inputs of the band's input set."""

    eps: float
    n: int
    verified: float | None  # lower bound; None: not verified at this eps
    undecided: float  # timeout / unknown / error (0 without verify rows)
    attacked: float | None  # upper bound; None: not attacked at this eps
    clean: float | None
    open_undecided: float = 0.0  # undecided and not broken by any attack: the hatched part of the band


@dataclass(frozen=True)
class Band:
    ckpt_sha: str
    name: str  # file name (short sha)
    model: str
    dataset: str
    split: str
    threat: str
    inputs: frozenset[int]
    points: tuple[BandPoint, ...]

    @property
    def inputs_text(self) -> str:
        return describe_inputs(self.inputs)


def describe_inputs(inputs: Iterable[int]) -> str:
    """``inputs 0–99 (n=100)``, or with a gap ``inputs 0–120, not contiguous (n=57)``."""
    s = sorted(inputs)
    if not s:
        return "no inputs (n=0)"
    rng = f"{s[0]}" if len(s) == 1 else f"{s[0]}–{s[-1]}"
    gap = "" if s[-1] - s[0] + 1 == len(s) else ", not contiguous"
    return f"input{'s' if len(s) > 1 else ''} {rng}{gap} (n={len(s)})"


def _pct(k: int, n: int) -> float:
    return 100.0 * k / n


def _point(ck: CheckpointRows, s: Setting, inputs: set[int]) -> BandPoint:
    ver = [r for r in ck.select("verify", s.threat, s.eps) if r.idx in inputs]
    att = [r for r in ck.select("attack", s.threat, s.eps) if r.idx in inputs]
    n = len(inputs)
    verified = undecided = None
    if ver:
        by: dict[int, list[str]] = defaultdict(list)
        for r in ver:
            by[r.idx].append(r.status)
        verified = _pct(sum("verified" in v for v in by.values()), n)
        undecided = _pct(sum(all(x in UNDECIDED for x in v) for v in by.values()), n)
    attacked = None
    robust: dict[int, bool] = {}
    for r in att:
        robust[r.idx] = robust.get(r.idx, True) and r.status == "robust"
    if att:
        attacked = _pct(sum(robust.values()), n)
    open_undecided = 0.0
    if ver:
        open_undecided = _pct(sum(all(x in UNDECIDED for x in v) and robust.get(i, True) for i, v in by.items()), n)
    clean_by = {r.idx: r.label == r.prediction for r in ver + att if r.label is not None and r.prediction is not None}
    clean = _pct(sum(clean_by.values()), len(clean_by)) if clean_by else None
    return BandPoint(s.eps, n, verified, undecided or 0.0, attacked, clean, open_undecided)


def accuracy_bands(ck: CheckpointRows) -> list[Band]:
    """The bands of one checkpoint: per threat model, one per input set (see the module doc).

    At each eps the inputs evaluated are those both verified and attacked there (or those of
    whichever ran; both sets when they do not overlap). Points whose evaluated inputs are the
    same set form one band; a point is never drawn on another set than the one it was measured
    on, so a line never joins points of different inputs."""
    by_set: dict[tuple[str, frozenset[int]], list[BandPoint]] = defaultdict(list)
    for s in ck.settings():
        vi = {r.idx for r in ck.select("verify", s.threat, s.eps)}
        ai = {r.idx for r in ck.select("attack", s.threat, s.eps)}
        sets = [vi & ai] if vi & ai else [x for x in (vi, ai) if x]
        for inputs in sets:
            by_set[(s.threat, frozenset(inputs))].append(_point(ck, s, inputs))
    return [
        Band(ck.ckpt_sha, ck.name, ck.model or "", ck.dataset, ck.split, threat, inputs, tuple(sorted(pts, key=lambda p: p.eps)))
        for (threat, inputs), pts in sorted(by_set.items(), key=lambda kv: (kv[0][0], min(kv[0][1]), len(kv[0][1])))
    ]


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _header(ax, text: str):  # noqa: ANN001, ANN202 - a legend line without a handle (a group title)
    from matplotlib.lines import Line2D

    return Line2D([], [], linestyle="none", marker="none", label=text)


def _eps_ticks(ax, values: Iterable[float]) -> None:  # noqa: ANN001
    ticks = sorted(set(values))
    if len(ticks) > 10:  # keep ~10 labelled ticks, always the first and the last
        step = -(-len(ticks) // 10)
        ticks = ticks[::step] + ([ticks[-1]] if (len(ticks) - 1) % step else [])
    ax.set_xticks(ticks)
    ax.set_xticklabels([eps_text(t) for t in ticks], rotation=45 if len(ticks) > 4 else 0, ha="right" if len(ticks) > 4 else "center")


def accuracy_vs_eps_figure(groups: list[CheckpointRows]):  # noqa: ANN201 - a matplotlib Figure
    """The figure of :func:`plot_accuracy_vs_eps` (not saved)."""
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    panels: dict[tuple[str, str, str], list[Band]] = defaultdict(list)
    for g in groups:
        for b in accuracy_bands(g):
            panels[(b.dataset, b.split, b.threat)].append(b)
    keys = sorted(panels, key=lambda k: Setting(k[0], k[1], k[2], 0.0).sort_key())
    ncols = min(3, max(1, len(keys)))
    nrows = -(-max(1, len(keys)) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 6.6 * nrows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(keys):]:
        ax.set_axis_off()
    if not keys:
        flat[0].text(0.5, 0.5, "no verify or attack results", ha="center", va="center", transform=flat[0].transAxes)
    for ax, key in zip(flat, keys):
        dataset, split, threat = key
        bands = panels[key]
        all_eps = [p.eps for b in bands for p in b.points]
        span = max(all_eps) if all_eps else 1.0
        width = 0.05 * span  # of the bar that stands for a band at a single eps
        # bands with a single eps are bars; several at the same eps stand side by side
        singles: dict[float, list[int]] = defaultdict(list)
        for k, b in enumerate(bands):
            if len(b.points) == 1:
                singles[b.points[0].eps].append(k)
        handles, seen = [], set()
        for k, b in enumerate(bands):
            color = COLORS[k % len(COLORS)]  # one colour per band: input sets of one checkpoint differ too
            if b.ckpt_sha not in seen:
                seen.add(b.ckpt_sha)
                handles.append(_header(ax, f"{b.name} · {b.model or 'model unknown'}"))
            xs = [p.eps for p in b.points]
            if len(b.points) == 1:
                side = singles[xs[0]]
                xs = [xs[0] + (side.index(k) - (len(side) - 1) / 2) * width]
            lo = [p.verified for p in b.points]
            hi = [p.attacked for p in b.points]
            und = [p.open_undecided for p in b.points]
            both = [i for i, p in enumerate(b.points) if p.verified is not None and p.attacked is not None]
            if len(b.points) == 1:
                p, x = b.points[0], xs[0]
                if p.verified is not None and p.attacked is not None and p.attacked > p.verified:
                    ax.bar(x, p.attacked - p.verified, bottom=p.verified, width=width, color=color, alpha=0.25, gid="band", linewidth=0)
                if p.open_undecided > 0 and p.verified is not None:
                    ax.bar(x, p.open_undecided, bottom=p.verified, width=width, facecolor="none", edgecolor="0.35", hatch="////",
                           gid="undecided", linewidth=0)
            else:
                if both:
                    ax.fill_between([xs[i] for i in both], [lo[i] for i in both], [hi[i] for i in both], color=color, alpha=0.25,
                                    gid="band", linewidth=0)
                vi = [i for i, p in enumerate(b.points) if p.verified is not None]
                if any(und[i] > 0 for i in vi):
                    ax.fill_between([xs[i] for i in vi], [lo[i] for i in vi], [min(100.0, lo[i] + und[i]) for i in vi],
                                    facecolor="none", edgecolor="0.35", hatch="////", gid="undecided", linewidth=0)
            vi = [i for i, p in enumerate(b.points) if p.verified is not None]
            ai = [i for i, p in enumerate(b.points) if p.attacked is not None]
            if vi:
                ax.plot([xs[i] for i in vi], [lo[i] for i in vi], color=color, marker="o", linestyle="-", gid="verified")
            if ai:
                ax.plot([xs[i] for i in ai], [hi[i] for i in ai], color=color, marker="v", linestyle="--", gid="attacked")
            cleans = [p.clean for p in b.points if p.clean is not None]
            clean = cleans[0] if cleans and max(cleans) - min(cleans) < 1e-9 else None
            if clean is not None:
                ax.plot([0.0], [clean], color=color, marker="*", markersize=11, linestyle="none", gid="clean", clip_on=False)
            what = "verified–attacked" if both else "verified only" if vi else "attacked only"
            label = f"{b.inputs_text}: {what}" + (f", clean {clean:.1f}%" if clean is not None else "")
            handles.append(Patch(facecolor=color, alpha=0.35, edgecolor=color, label=label))
        ax.set_title(f"{dataset}{'' if split == 'test' else f' ({split} split)'} · {Setting(dataset, split, threat, 0.0).threat_name}")
        ax.set_xlabel(f"eps ({Setting(dataset, split, threat, 0.0).threat_name}, pixel units)")
        ax.set_ylabel("accuracy (%) of the n inputs")
        ax.set_ylim(0, 100)
        ax.set_xlim(-0.08 * span, 1.12 * span)
        _eps_ticks(ax, [0.0, *all_eps])
        ax.grid(alpha=0.3)
        ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), title="checkpoint · model / input set",
                  title_fontsize=7, frameon=False)
    key_handles = [
        Line2D([], [], color="0.2", marker="o", linestyle="-", label="verified (lower bound, exact verifier)"),
        Line2D([], [], color="0.2", marker="v", linestyle="--", label="attacked (upper bound, no attack broke it)"),
        Patch(facecolor="0.2", alpha=0.25, label="between the bounds: not known"),
        Patch(facecolor="none", edgecolor="0.35", hatch="////", label="verifier undecided (timeout / unknown), not broken by attacks"),
        Line2D([], [], color="0.2", marker="*", markersize=11, linestyle="none", label="clean accuracy (eps 0)"),
    ]
    fig.legend(handles=key_handles, loc="lower center", ncol=3 if ncols > 1 else 2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def plot_accuracy_vs_eps(groups: list[CheckpointRows], path: str | Path) -> Path:
    return _save(accuracy_vs_eps_figure(groups), path)


def decided_curve(ck: CheckpointRows) -> dict[Setting, dict]:
    """setting -> {"points": [(seconds, inputs decided within it)], "n": inputs, "undecided": count,
    "limit": the time limit when all rows share one} for the verify rows of a checkpoint."""
    out: dict[Setting, dict] = {}
    for s in ck.settings():
        ver = ck.select("verify", s.threat, s.eps)
        if not ver:
            continue
        by: dict[int, list] = defaultdict(list)
        for r in ver:
            by[r.idx].append(r)
        times = sorted(min(r.seconds for r in rs if r.status in DECIDED and r.seconds is not None)
                       for rs in by.values() if any(r.status in DECIDED and r.seconds is not None for r in rs))
        limits = {r.timeout for r in ver if r.timeout is not None}
        out[s] = {"points": [(t, i + 1) for i, t in enumerate(times)], "n": len(by),
                  "undecided": sum(all(r.status in UNDECIDED for r in rs) for rs in by.values()),
                  "limit": next(iter(limits)) if len(limits) == 1 else None}
    return out


def decided_vs_time_figure(groups: list[CheckpointRows]):  # noqa: ANN201 - a matplotlib Figure
    """The figure of :func:`plot_decided_vs_time` (not saved)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    handles = []
    styles = ("-", "--", ":", "-.")
    limits = set()
    for k, g in enumerate(groups):
        curves = decided_curve(g)
        if not curves:
            continue
        color = COLORS[k % len(COLORS)]
        handles.append(_header(ax, f"{g.name} · {g.model or 'model unknown'} · {g.dataset}"))
        for j, (s, c) in enumerate(sorted(curves.items(), key=lambda kv: kv[0].sort_key())):
            pts = c["points"]
            label = f"{s.threat_name} {eps_text(s.eps)}: {len(pts)}/{c['n']} decided, {c['undecided']} undecided"
            (line,) = ax.step([0.0] + [p[0] for p in pts], [0] + [p[1] for p in pts], where="post", color=color,
                              linestyle=styles[j % len(styles)], label=label)
            ax.axhline(c["n"], color=color, linestyle=":", linewidth=0.8, alpha=0.6)
            handles.append(line)
            if c["limit"] is not None:
                limits.add(c["limit"])
    for t in sorted(limits):
        handles.append(ax.axvline(t, color="0.4", linestyle="-.", linewidth=0.8, label=f"time limit {t:g} s"))
    ax.set_xlabel("solve time per input (s)")
    ax.set_ylabel("inputs decided (dotted: all n inputs)")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_title("exact verifier: inputs decided vs solve time")
    ax.grid(alpha=0.3)
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no verify results", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def plot_decided_vs_time(groups: list[CheckpointRows], path: str | Path) -> Path:
    return _save(decided_vs_time_figure(groups), path)


def _save(fig, path: str | Path) -> Path:  # noqa: ANN001 - a matplotlib Figure
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
