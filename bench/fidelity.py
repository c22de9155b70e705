"""The paper's claims, checked on real images: MNIST, the documented train-from-test split.

    .venv/bin/python bench/fidelity.py --data-dir ../shared/data/mnist             # defaults below
    .venv/bin/python bench/fidelity.py --n 500 --timeout 120 --epochs 100 --parallel 8   # the issue's full size

What runs, per training method (``mr``, ``plain``, ``pgd`` = PGD-7 adversarial training, and the
paper's two ablations ``intrinsic-only`` and ``hamming-only``) and seed, each through the real
command lines (so the figures are what a user gets):

1. ``mr-train small --dataset mnist --train-from-test K --method M --eps EPS --epochs E --seed S``:
   train on the first K official test images; the checkpoint records ``test[:K]`` /
   ``test[K:]``. Gammas are the MNIST preset's (``presets.preset_for("small", "mnist")``), the
   schedule is Appendix B's with every knot scaled to E epochs (LR 0 -> 0.1 at 40%, 0.005 at 80%,
   0 at 100%; eps from EPS/4 to EPS over 10%-35%; gamma_I, gamma_H x10 over 20%-80%).
2. ``mr-eval verify --eps EPS --n N --timeout T --jobs 1``: exact MILP verification of the first
   N held-out images (the split comes from the checkpoint: ``test[K:]``).
3. ``mr-eval attack --attack pgd``: PGD-20 x 10 restarts, step EPS/4 (the paper's 2/255 at
   8/255, scaled to EPS), and ``--attack autoattack`` (standard: APGD-CE, APGD-T, FAB-T, Square).

Then, per method, mean +- std over seeds of: clean, verified (timeouts counted apart), PGD and
AutoAttack accuracy on those N images; mean unstable ReLUs per input and verifier seconds per
input (from the verifier's rows); training seconds per epoch (the SGD steps only: the CSV's
``train_seconds``; ``x plain`` is the ratio to plain's mean in the same run). The table goes to
``--results`` (``.csv``: one row per method; ``_runs.csv``: one per run; ``.md``: the table, the
claims checked one by one, a Table-1-style block beside the paper's CIFAR-10 rows, and the
provenance: commit, arguments, versions, date, machine, wall and CPU time).

Every figure is from ``test[K:]`` of MNIST's official test set after training on ``test[:K]``:
not a standard-split figure, and not comparable number for number with the paper's CIFAR-10
rows, which are printed beside them for the shape of the claims only.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METHODS = ("mr", "plain", "pgd", "intrinsic-only", "hamming-only")
# rough cost order (slowest first), so that parallel pipelines finish together
COST = {"pgd": 0, "intrinsic-only": 1, "plain": 2, "mr": 3, "hamming-only": 4}
LABELS = {"mr": "Manifold Regularization (small)", "plain": "plain (no regularizer)", "pgd": "PGD-7 adversarial training (Madry et al.)",
          "intrinsic-only": "intrinsic regularization only", "hamming-only": "Hamming regularization only"}


@dataclass
class Run:
    method: str
    seed: int
    ckpt: str
    sha: str = ""
    epochs: int = 0
    train_seconds_per_epoch: float = math.nan
    clean: float = math.nan
    verified: float = math.nan
    timeouts: int = 0
    undecided: int = 0  # timeout + error + unknown
    pgd: float = math.nan
    autoattack: float = math.nan
    unstable_relus: float = math.nan
    verify_seconds: float = math.nan
    n: int = 0
    final_test_acc: float = math.nan  # on all of the held-out split, from training
    collapsed: bool = False
    inconsistent: int = 0  # inputs verified but broken by an attack (must be 0)
    wall: dict[str, float] = field(default_factory=dict)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _run(cmd: list[str], log: Path) -> None:
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        p = subprocess.run(["nice", "-n", "10", *cmd], stdout=fh, stderr=subprocess.STDOUT, env=_env(), cwd=REPO)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {p.returncode}; see {log}")


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _trained_epochs(ckpt: Path) -> int:
    if not ckpt.exists():
        return 0
    from robustbench_mr.checkpoint import load_checkpoint

    _, meta = load_checkpoint(ckpt)
    return int(meta.epoch or 0)


def pipeline(args: argparse.Namespace, method: str, seed: int) -> Run:
    out = Path(args.out_dir)
    ckpt = out / f"small_mnist_{method}_s{seed}.pt"
    log = out / f"small_mnist_{method}_s{seed}.log"
    run = Run(method, seed, str(ckpt))
    eps = args.eps
    t = time.perf_counter()
    done = _trained_epochs(ckpt)
    if done < args.epochs:
        cmd = [_bin("mr-train"), "small", "--dataset", "mnist", "--data-dir", args.data_dir, "--train-from-test", str(args.train_from_test),
               "--method", method, "--eps", repr(eps), "--epochs", str(args.epochs), "--seed", str(seed), "--out", str(ckpt),
               "--threads", "1", "--quiet", "--pgd-steps", "7"]
        _run(cmd + (["--resume"] if done else []), log)
    run.wall["train"] = time.perf_counter() - t
    common = ["--eps", repr(eps), "--n", str(args.n), "--db", str(out / "results.sqlite"), "--data-dir", args.data_dir, "--seed", str(seed)]
    t = time.perf_counter()
    _run([_bin("mr-eval"), "verify", str(ckpt), *common, "--timeout", repr(args.timeout), "--jobs", "1"], log)
    run.wall["verify"] = time.perf_counter() - t
    t = time.perf_counter()
    _run([_bin("mr-eval"), "attack", str(ckpt), "--attack", "pgd", *common, "--pgd-steps", "20", "--pgd-restarts", "10",
          "--pgd-step-size", repr(eps / 4)], log)
    run.wall["pgd"] = time.perf_counter() - t
    t = time.perf_counter()
    _run([_bin("mr-eval"), "attack", str(ckpt), "--attack", "autoattack", *common], log)
    run.wall["autoattack"] = time.perf_counter() - t
    return collect(args, run)


def collect(args: argparse.Namespace, run: Run) -> Run:
    from robustbench_mr.checkpoint import file_sha256, load_checkpoint
    from robustbench_mr.results_db import ResultsDB
    from robustbench_mr.utils.splits import eval_split_of

    _, meta = load_checkpoint(run.ckpt)
    run.sha = file_sha256(run.ckpt)
    run.epochs = int(meta.epoch or 0)
    run.final_test_acc = float(meta.metrics.get("test_acc", math.nan))
    run.collapsed = bool(meta.metrics.get("collapsed"))
    with open(Path(run.ckpt).with_suffix(".csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    per_epoch = [float(r.get("train_seconds") or "nan") for r in rows]
    run.train_seconds_per_epoch = statistics.fmean(per_epoch) if per_epoch else math.nan
    split = eval_split_of(meta.train_config)
    n = args.n
    with ResultsDB(Path(args.out_dir) / "results.sqlite") as db:
        ver = [r for r in db.rows(kind="verify", ckpt_sha=run.sha, split=split) if r.idx < n and math.isclose(r.eps, args.eps)]
        att = [r for r in db.rows(kind="attack", ckpt_sha=run.sha, split=split, norm="linf") if r.idx < n and math.isclose(r.eps, args.eps)]
    pgd = {r.idx: r for r in att if r.method == "pgd"}
    aa = {r.idx: r for r in att if r.method == "autoattack"}
    vmap = {r.idx: r for r in ver}
    run.n = len(vmap)
    if run.n:
        run.clean = sum(r.status != "misclassified" for r in ver) / run.n
        run.verified = sum(r.status == "verified" for r in ver) / run.n
        run.timeouts = sum(r.status == "timeout" for r in ver)
        run.undecided = sum(r.status in ("timeout", "error", "unknown") for r in ver)
        run.unstable_relus = statistics.fmean(float(r.details.get("unstable_relus", math.nan)) for r in ver)
        run.verify_seconds = statistics.fmean(float(r.seconds or 0.0) for r in ver)
    if pgd:
        run.pgd = sum(r.status == "robust" for r in pgd.values()) / len(pgd)
    if aa:
        run.autoattack = sum(r.status == "robust" for r in aa.values()) / len(aa)
    run.inconsistent = sum(1 for i, r in vmap.items() if r.status == "verified" and any(m.get(i) is not None and m[i].status == "broken" for m in (pgd, aa)))
    return run


def step_costs(args: argparse.Namespace, rounds: int, warmup: int = 3, batch: int = 128) -> dict[str, float]:
    """Step time of plain, mr and PGD-7 training, interleaved round-robin in one process on real
    MNIST batches (as bench/train_overhead.py on CIFAR shapes): the median over rounds of each
    step's time over plain's in the same round, far less sensitive to other jobs on a shared
    machine than per-epoch times measured at different moments. Returns {name: ratio} and
    {name + "_ms": median ms}."""
    import torch

    from robustbench_mr.data import load_dataset
    from robustbench_mr.models import build_model
    from robustbench_mr.training.presets import preset_for
    from robustbench_mr.training.regularizers import HammingAccumulator
    from robustbench_mr.training.trainer import Method, StepSettings, training_step

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = load_dataset("mnist", f"test[:{args.train_from_test}]", args.data_dir)
    x, y = x[:batch], y[:batch]
    p = preset_for("small", "mnist")
    model = build_model("small", input_shape=(1, 28, 28), num_classes=10, mean=[0.0], std=[1.0]).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    hamming = HammingAccumulator(model, alpha=p.alpha)
    gen = torch.Generator().manual_seed(0)
    methods = [("plain", Method.PLAIN, 1), ("mr", Method.MR, 1), ("pgd-7", Method.PGD, 7)]
    times: dict[str, list[float]] = {m: [] for m, _, _ in methods}
    for rnd in range(warmup + rounds):
        for name, method, k in methods:
            s = StepSettings(method, args.eps, p.gamma_i, p.gamma_h, k, None)
            t0 = time.perf_counter()
            training_step(model, opt, hamming, x, y, s, gen)
            if rnd >= warmup:
                times[name].append(time.perf_counter() - t0)
    out = {name: statistics.median(a / b for a, b in zip(times[name], times["plain"])) for name in times}
    out.update({f"{name}_ms": 1e3 * statistics.median(times[name]) for name in times})
    return out


# --- aggregation and rendering ----------------------------------------------------------------------

PCT = ("clean", "verified", "pgd", "autoattack")


def _ms(values: list[float], scale: float = 1.0) -> tuple[float, float]:
    vals = [v * scale for v in values if not math.isnan(v)]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def aggregate(runs: list[Run]) -> list[dict[str, float | str]]:
    plain = _ms([r.train_seconds_per_epoch for r in runs if r.method == "plain"])[0]
    table = []
    for method in METHODS:
        rs = [r for r in runs if r.method == method]
        if not rs:
            continue
        row: dict[str, float | str] = {"method": method, "seeds": len(rs), "n": min(r.n for r in rs)}
        for k in PCT:
            row[f"{k}_mean"], row[f"{k}_std"] = _ms([getattr(r, k) for r in rs], 100.0)
        for k in ("timeouts", "unstable_relus", "verify_seconds", "train_seconds_per_epoch"):
            row[f"{k}_mean"], row[f"{k}_std"] = _ms([float(getattr(r, k)) for r in rs])
        ratios = [r.train_seconds_per_epoch / plain for r in rs] if plain and not math.isnan(plain) else []
        row["x_plain_mean"], row["x_plain_std"] = _ms(ratios)
        row["collapsed"] = sum(r.collapsed for r in rs)
        row["inconsistent"] = sum(r.inconsistent for r in rs)
        table.append(row)
    return table


def _pm(row: dict, key: str, digits: int = 1) -> str:
    m, s = row[f"{key}_mean"], row[f"{key}_std"]
    if isinstance(m, float) and math.isnan(m):
        return "n/a"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def render_table(table: list[dict]) -> str:
    head = ("| method | clean % | verified % | timeouts | PGD-20x10 % | AutoAttack % | unstable ReLUs / input | verifier s / input "
            "| train s / epoch | x plain |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for row in table:
        lines.append(f"| {row['method']} | {_pm(row, 'clean')} | {_pm(row, 'verified')} | {_pm(row, 'timeouts')} | {_pm(row, 'pgd')} "
                     f"| {_pm(row, 'autoattack')} | {_pm(row, 'unstable_relus')} | {_pm(row, 'verify_seconds', 2)} "
                     f"| {_pm(row, 'train_seconds_per_epoch', 2)} | {_pm(row, 'x_plain', 2)} |")
    return "\n".join(lines)


def _steps(costs: dict[str, float] | None, name: str) -> str:
    if not costs:
        return ""
    text = f" (interleaved steps, same process: {costs[name]:.2f}x, {costs[name + '_ms']:.1f} ms vs {costs['plain_ms']:.1f} ms"
    if f"{name} (glibc default)" in costs:
        text = (text + ", freed memory kept as mr-train does on CPU; with glibc's default policy: "
                f"{costs[name + ' (glibc default)']:.2f}x, {costs[name + '_ms (glibc default)']:.1f} ms vs "
                f"{costs['plain_ms (glibc default)']:.1f} ms")
    return text + ")"


def _any_timeout(mr: dict, plain: dict, margin: float) -> str:
    """Whether the verified gap would survive any verifier timeout for plain: plain's verified
    accuracy never exceeds its attacked accuracy (no input is both verified and broken, checked
    on every run), so MR's verified accuracy at this timeout minus plain's AutoAttack / PGD
    accuracy (whichever is lower) bounds the gap from below, however long plain's verifier ran."""
    ceiling = min(plain["autoattack_mean"], plain["pgd_mean"])
    gap = mr["verified_mean"] - ceiling
    verdict = "so the claim holds whatever plain's timeout" if gap >= margin else "not enough to settle it for longer plain timeouts"
    return (f"at any verifier timeout plain's verified accuracy stays <= its attacked accuracy {ceiling:.1f}: "
            f"a gap >= {gap:+.1f} points, {verdict}")


def check_claims(table: list[dict], runs: list[Run], args: argparse.Namespace,
                 costs: dict[str, float] | None = None) -> list[tuple[str, bool | None, str]]:
    """(claim, holds (None: not measurable here), the figures) for each claim of the issue."""
    by = {r["method"]: r for r in table}
    out: list[tuple[str, bool | None, str]] = []
    mr, plain, pgd = by.get("mr"), by.get("plain"), by.get("pgd")
    if mr and plain:
        dv = mr["verified_mean"] - plain["verified_mean"]
        dc = mr["clean_mean"] - plain["clean_mean"]
        ok = dv >= args.margin_verified and abs(dc) <= args.margin_clean
        out.append((f"MR verified accuracy above plain by a wide margin (>= {args.margin_verified:g} points) at clean accuracy within "
                    f"{args.margin_clean:g} points", ok,
                    f"verified {mr['verified_mean']:.1f} vs {plain['verified_mean']:.1f} ({dv:+.1f} points; plain has "
                    f"{plain['timeouts_mean']:.1f} timeouts of {plain['n']} on average: its verified figure is a lower bound); "
                    f"clean {mr['clean_mean']:.1f} vs {plain['clean_mean']:.1f} ({dc:+.1f}); {_any_timeout(mr, plain, args.margin_verified)}"))
        ratio = mr["unstable_relus_mean"] / plain["unstable_relus_mean"] if plain["unstable_relus_mean"] else math.nan
        out.append((f"MR unstable-ReLU count a fraction (<= {args.unstable_fraction:g}) of plain's", ratio <= args.unstable_fraction,
                    f"{mr['unstable_relus_mean']:.1f} vs {plain['unstable_relus_mean']:.1f} per input (ratio {ratio:.3f})"))
        out.append(("MR training cost <= 3.5x plain (same run; judged on the interleaved steps when measured, per-epoch "
                    "wall times on a shared machine being noise-dominated)", (costs["mr"] if costs else mr["x_plain_mean"]) <= 3.5,
                    f"{mr['train_seconds_per_epoch_mean']:.2f} s vs {plain['train_seconds_per_epoch_mean']:.2f} s per epoch: "
                    f"{mr['x_plain_mean']:.2f}x{_steps(costs, 'mr')}"))
    if pgd and plain:
        out.append(("PGD-7 training cost >= 5x plain (same run; judged as above)", (costs["pgd-7"] if costs else pgd["x_plain_mean"]) >= 5.0,
                    f"{pgd['train_seconds_per_epoch_mean']:.2f} s vs {plain['train_seconds_per_epoch_mean']:.2f} s per epoch: "
                    f"{pgd['x_plain_mean']:.2f}x{_steps(costs, 'pgd-7')}"))
    bad = []
    for r in runs:
        order = [r.verified, r.autoattack, r.pgd, r.clean]
        if any(math.isnan(v) for v in order) or not all(a <= b + 1e-12 for a, b in zip(order, order[1:])):
            bad.append(f"{r.method} s{r.seed}: {' / '.join(f'{100 * v:.0f}' for v in order)}")
    incons = sum(r.inconsistent for r in runs)
    out.append(("verified <= AutoAttack <= PGD <= clean on every row (every run), and no input both verified and broken",
                not bad and incons == 0,
                ("all runs in order" if not bad else "out of order: " + "; ".join(bad)) + f"; inputs verified and broken: {incons}"))
    collapsed = [f"{r.method} s{r.seed}" for r in runs if r.collapsed]
    out.append(("no run collapsed (chance accuracy with every ReLU stable)", not collapsed, ", ".join(collapsed) or "none"))
    return out


def _paper_rows() -> list[dict[str, str]]:
    try:
        from robustbench_mr.reports.published import load_published

        rows = [asdict(r) for r in load_published()]
    except Exception:  # noqa: BLE001 - older layouts: the CSV in results/ or in ../shared/paper
        rows = []
        for p in (REPO / "results" / "published.csv", REPO.parent / "shared" / "paper" / "published.csv"):
            if p.is_file():
                with open(p, newline="") as fh:
                    rows = list(csv.DictReader(fh))
                break
    return [r for r in rows if str(r.get("table")) == "1"]


def render_table1(table: list[dict], args: argparse.Namespace) -> str:
    """Table-1 style: the paper's CIFAR-10 rows, then this run's MNIST rows, clearly apart."""
    lines = ["| data | defence | verified % | robust (PGD) % | clean % |", "|---|---|---|---|---|"]
    for r in _paper_rows():
        if r["defense"] in ("PGD (Madry et al.)", "Manifold Regularization (small)", "Manifold Regularization (large)",
                            "intrinsic regularization only", "Hamming regularization only", "Xiao et al.", "Wong et al."):
            lines.append(f"| CIFAR-10 test, eps 8/255 (paper) | {r['defense']} | {r['verified_pct'] or '-'} | {r['robust_pct'] or '-'} | {r['clean_pct']} |")
    k = args.train_from_test
    tag = f"**MNIST** test[{k}:] first {args.n}, eps {args.eps:g} (this run; trained on test[:{k}])"
    for row in table:
        lines.append(f"| {tag} | {LABELS[row['method']]}, small, {args.epochs} epochs, {row['seeds']} seeds | {_pm(row, 'verified')} "
                     f"| {_pm(row, 'pgd')} | {_pm(row, 'clean')} |")
    return "\n".join(lines)


def _provenance(args: argparse.Namespace, started: str, wall: float) -> dict[str, object]:
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception:  # noqa: BLE001
            return ""

    from importlib.metadata import version

    versions = {}
    for pkg in ("robustbench_mr", "torch", "numpy", "highspy", "pyautoattack", "scipy"):
        try:
            versions[pkg] = version(pkg)
        except Exception:  # noqa: BLE001
            versions[pkg] = "?"
    from robustbench_mr.training.presets import preset_for

    p = preset_for("small", "mnist")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "commit": git("rev-parse", "HEAD"),
        "tree": "dirty (uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "clean",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "args": vars(args),
        "schedule": {"gamma_i": p.gamma_i, "gamma_h": p.gamma_h, "gamma_growth": p.gamma_growth, "alpha": p.alpha, "lr": p.lr,
                     "lr_mid": p.lr_mid, "eps_start": args.eps / 4, "eps": args.eps, "pgd_train_steps": 7,
                     "pgd_train_step": 2.5 * args.eps / 7, "batch_size": p.batch_size, "weight_decay": p.weight_decay},
        "versions": versions,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "started": started,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 1),
        "child_cpu_seconds": round(children.ru_utime + children.ru_stime, 1),
    }


def write_results(args: argparse.Namespace, runs: list[Run], table: list[dict], claims: list, prov: dict) -> None:
    base = Path(args.results)
    base.parent.mkdir(parents=True, exist_ok=True)
    with open(base.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[*table[0].keys(), "dataset", "split", "eps", "epochs", "commit"])
        w.writeheader()
        for row in table:
            w.writerow({**row, "dataset": "mnist", "split": f"test[{args.train_from_test}:]", "eps": args.eps, "epochs": args.epochs,
                        "commit": prov["commit"]})
    runs_path = base.with_name(base.name + "_runs.csv")
    with open(runs_path, "w", newline="") as fh:
        fields = [f for f in asdict(runs[0]) if f != "wall"] + ["wall"]
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in runs:
            d = asdict(r)
            d["wall"] = json.dumps({k: round(v, 1) for k, v in r.wall.items()})
            w.writerow(d)
    k = args.train_from_test
    md = [
        f"# Fidelity: the paper's claims on MNIST (`bench/fidelity.py`)",
        "",
        f"**Not a standard-split result.** Trained on the first {k} images of MNIST's official test set (`test[:{k}]`), "
        f"evaluated on the first {args.n} of the other {10000 - k} (`test[{k}:]`); the training images are not on this machine. "
        f"The `small` conv net (2 stride-2 convs, 128 hidden units) at L-inf eps {args.eps:g}, {args.epochs} epochs, seeds "
        f"{', '.join(map(str, args.seeds))}; mean ± std over seeds. Verifier timeout {args.timeout:g} s per input "
        "(timeouts count as not verified).",
        "",
        render_table(table),
        "",
        "## Claims, one by one",
        "",
    ]
    for claim, ok, figures in claims:
        mark = "holds" if ok else ("n/a" if ok is None else "**does not hold**")
        md.append(f"- {claim}: {mark}. {figures}.")
    md += [
        "",
        "## Table 1 style, beside the paper's rows",
        "",
        "The paper's rows are CIFAR-10 at eps 8/255 (published.csv); the rows below them are **MNIST**, at another radius, "
        "on another split and with another budget: they show whether the claims keep their shape, not the paper's numbers.",
        "",
        render_table1(table, args),
        "",
        "## Provenance",
        "",
        "```json",
        json.dumps(prov, indent=2, default=str),
        "```",
        "",
        f"Per run: `{runs_path.name}` (checkpoint sha256, per-stage wall seconds). Results database and checkpoints: `{args.out_dir}`.",
    ]
    base.with_suffix(".md").write_text("\n".join(md) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "mnist"), help="folder with the official MNIST test files")
    ap.add_argument("--train-from-test", type=int, default=5000)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--n", type=int, default=100, help="held-out images evaluated (the issue asks for 500)")
    ap.add_argument("--timeout", type=float, default=5.0, help="verifier seconds per input (the paper: 120)")
    ap.add_argument("--parallel", type=int, default=2, help="pipelines at once (each single-threaded)")
    ap.add_argument("--out-dir", default="runs/fidelity")
    ap.add_argument("--results", default="results/fidelity_mnist", help="output stem: .csv, _runs.csv, .md")
    ap.add_argument("--margin-verified", type=float, default=20.0, help="'a wide margin', in points")
    ap.add_argument("--margin-clean", type=float, default=5.0, help="'within a few points'")
    ap.add_argument("--unstable-fraction", type=float, default=0.25, help="'a fraction of plain's'")
    ap.add_argument("--step-rounds", type=int, default=15, help="rounds of the interleaved step-cost measurement (0: skip)")
    ap.add_argument("--collect-only", action="store_true", help="no training or evaluation: tabulate what --out-dir holds")
    args = ap.parse_args(argv)
    args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    jobs = sorted(((m, s) for m in methods for s in args.seeds), key=lambda j: (COST[j[0]], j[1]))
    if args.collect_only:
        runs = [collect(args, Run(m, s, str(Path(args.out_dir) / f"small_mnist_{m}_s{s}.pt"))) for m, s in jobs]
    else:
        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            futures = [pool.submit(pipeline, args, m, s) for m, s in jobs]
            runs = []
            for f in futures:
                r = f.result()
                runs.append(r)
                print(f"done {r.method} s{r.seed}: clean {r.clean:.2f} verified {r.verified:.2f} pgd {r.pgd:.2f} aa {r.autoattack:.2f} "
                      f"unstable {r.unstable_relus:.1f} wall {json.dumps({k: round(v) for k, v in r.wall.items()})}", flush=True)
    runs.sort(key=lambda r: (METHODS.index(r.method), r.seed))
    table = aggregate(runs)
    costs = None
    if args.step_rounds:
        from robustbench_mr.utils.allocator import keep_freed_memory

        # first with glibc's default policy, then as mr-train runs on CPU (keep_freed_memory, on by default; it cannot be
        # undone within a process): the claims are judged on the latter, the former is printed beside it
        default_policy = step_costs(args, args.step_rounds)
        if keep_freed_memory():
            costs = step_costs(args, args.step_rounds)
            costs.update({f"{k} (glibc default)": v for k, v in default_policy.items()})
        else:
            costs = default_policy
    claims = check_claims(table, runs, args, costs)
    prov = _provenance(args, started, time.perf_counter() - t0)
    if costs:
        prov["interleaved_step_costs"] = {k: round(v, 3) for k, v in costs.items()}
    write_results(args, runs, table, claims, prov)
    print(render_table(table))
    print()
    for claim, ok, figures in claims:
        print(f"[{'ok' if ok else 'NO'}] {claim}: {figures}")
    print(f"\nwrote {Path(args.results).with_suffix('.md')} and .csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
