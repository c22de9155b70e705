"""Benchmark the exact verifier: (a) interval bounds + one MILP per target class solved to
optimality (the paper's setup) vs (b) the runner's default (interval bounds, PGD warm start,
the default bounds, early-stopping MILPs; ``verify_one``), side by side on the same inputs of

* digits: a fixed seeded ``small`` convnet trained here (a few seconds, plain training, so
  many unstable ReLUs), eps 2/255: the largest radius at which the baseline still decides
  a good share of inputs within the timeout (at 0.02 it decided none);
* digits: a seeded 24x24 ``mlp`` (few unstable ReLUs, so the baseline decides too), eps 0.05;
* cifar-shaped: Wong et al.'s real ``cifar_small_8px`` convnet (../shared/data/wong2018) on the
  first correctly classified CIFAR-10 test images (../shared/data/eran_test_images), eps 8/255
  (the radius it was trained for: interval bounds alone prove only some inputs there, so most
  inputs need a MILP in the baseline; at 2/255 interval bounds decide nearly every input and
  both sides only measure bound arithmetic); a seeded random ``small`` model on random images
  when the shared data is absent.

Prints median seconds per input, counts by status, and whether both agree on every input that
both decide.  Usage:  .venv/bin/python bench/verify.py [--n-digits 20] [--n-cifar 10] [--timeout 20] [--bounds crown]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "verifiers"))

from robustbench_mr.verifiers.bounds.methods import DEFAULT_BOUNDS  # noqa: E402
from robustbench_mr.verifiers.spec.property import robustness_property  # noqa: E402
from robustbench_mr.verifiers.runs.dataset import verify_one  # noqa: E402
from robustbench_mr.verifiers.decide.chain import PropertyStatus, check_property  # noqa: E402
from robustbench_mr.verifiers.form.chain_from_torch import from_torch  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BASELINE_STATUS = {PropertyStatus.UNSAT: "verified", PropertyStatus.SAT: "falsified", PropertyStatus.TIMEOUT: "timeout",
                   PropertyStatus.UNKNOWN: "unknown", PropertyStatus.ERROR: "error"}


def digits_case(n: int):
    from conftest import train_digits  # the tests' seeded trainer

    from robustbench_mr.data.datasets import load_dataset
    model, _ = train_digits("small", seed=0, epochs=10)
    x, y = load_dataset("digits", "test", None, False)
    return "digits small (1x8x8)", model, (1, 8, 8), np.asarray(x[:n], dtype=np.float64), np.asarray(y[:n]), 2 / 255


def digits_mlp_case(n: int):
    from conftest import train_digits

    from robustbench_mr.data.datasets import load_dataset
    model, _ = train_digits("mlp", seed=0, epochs=10, hidden=(24, 24))
    x, y = load_dataset("digits", "test", None, False)
    return "digits mlp 24x24 (1x8x8)", model, (1, 8, 8), np.asarray(x[:n], dtype=np.float64), np.asarray(y[:n]), 0.05


def cifar_case(n: int):
    path, images = SHARED / "wong2018" / "cifar_small_8px.pth", SHARED / "eran_test_images" / "cifar10_test.csv"
    model = nn.Sequential(nn.Conv2d(3, 16, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(32 * 8 * 8, 100), nn.ReLU(), nn.Linear(100, 10))
    if path.exists() and images.exists():
        from robustbench_mr.models.layers import Normalize
        model.load_state_dict(torch.load(path, weights_only=True, map_location="cpu")["state_dict"][0])
        model = nn.Sequential(Normalize((0.485, 0.456, 0.406), (0.225,) * 3), *model)
        rows = np.loadtxt(images, delimiter=",", max_rows=60)
        x = rows[:, 1:].reshape(-1, 32, 32, 3).transpose(0, 3, 1, 2).reshape(len(rows), -1) / 255.0
        y = rows[:, 0].astype(int)
        name = "cifar_small_8px (3x32x32)"
    else:
        torch.manual_seed(0)
        x = np.random.default_rng(0).uniform(size=(n, 3072))
        with torch.no_grad():
            y = model(torch.from_numpy(x).float().reshape(-1, 3, 32, 32)).argmax(1).numpy()
        name = "random small (3x32x32)"
    model = model.eval().double()
    with torch.no_grad():
        pred = model(torch.from_numpy(x).reshape(-1, 3, 32, 32)).argmax(1).numpy()
    keep = np.nonzero(pred == y)[0][:n]  # correctly classified ones: misclassified inputs cost nothing in both
    return name, model, (3, 32, 32), x[keep], y[keep], 8 / 255


def run_case(name, model, shape, x, y, eps, timeout: float, bounds: str = DEFAULT_BOUNDS) -> list[str]:
    model = model.double().eval()
    net = from_torch(model, shape)
    a_status, a_secs, b_status, b_secs = [], [], [], []
    for i in range(len(x)):
        t = time.perf_counter()
        pred = int(net.forward(x[i]).argmax())
        if pred != int(y[i]):
            a_status.append("misclassified")
        else:
            r = check_property(net, robustness_property(x[i], int(y[i]), eps, 10), timeout, bounds="interval", early_stop=False, samples=0)
            a_status.append(BASELINE_STATUS[r.status])
        a_secs.append(time.perf_counter() - t)
        rb = verify_one(model, net, i, x[i], int(y[i]), eps, timeout, bounds, 20, 1, 0)
        b_status.append(rb.status.value)
        b_secs.append(rb.seconds)
    decided = {"verified", "falsified", "misclassified"}
    both = [(a, b) for a, b in zip(a_status, b_status) if a in decided and b in decided]
    agree = all(a == b for a, b in both)
    ma, mb = statistics.median(a_secs), statistics.median(b_secs)
    fmt = lambda c: ", ".join(f"{k} {v}" for k, v in sorted(Counter(c).items()))  # noqa: E731
    return [
        f"{name}, eps {eps:.4g}, {len(x)} inputs, timeout {timeout:g}s",
        f"  (a) interval + MILP per class to optimality: median {ma:8.3f} s  mean {statistics.fmean(a_secs):8.3f} s  | {fmt(a_status)}",
        f"  (b) {'default' if bounds == DEFAULT_BOUNDS else 'runner'} ({bounds} bounds + PGD + early stop):{' ' * max(0, 12 - len(bounds))}median {mb:8.3f} s  mean {statistics.fmean(b_secs):8.3f} s  | {fmt(b_status)}",
        f"  speedup (median) {ma / max(mb, 1e-9):.1f}x; same verdict on all {len(both)} inputs both decide: {agree}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-digits", type=int, default=20)
    ap.add_argument("--n-cifar", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--bounds", default=DEFAULT_BOUNDS, help=f"bounds for (b) (default {DEFAULT_BOUNDS}, the runner's default)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lines = run_case(*digits_case(args.n_digits), timeout=args.timeout, bounds=args.bounds)
    lines += run_case(*digits_mlp_case(args.n_digits), timeout=args.timeout, bounds=args.bounds)
    lines += run_case(*cifar_case(args.n_cifar), timeout=args.timeout, bounds=args.bounds)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
