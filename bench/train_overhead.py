"""Step time of manifold regularization vs plain and PGD adversarial training.

    .venv/bin/python bench/train_overhead.py                       # CPU: small + large, ~2 min
    .venv/bin/python bench/train_overhead.py --models small --steps 9   # CPU: small only, ~1 min
    .venv/bin/python bench/train_overhead.py --malloc default      # CPU: glibc's own allocator policy (see below)
    .venv/bin/python bench/train_overhead.py --device cuda --batch-size-large 128 --steps 20

The paper's claim: ``mr`` costs about three forward passes (one 3B batch: expect at most
~3.5x plain), PGD-k training about k+1 forward/backward passes (PGD-10: ~8x or more).
Every method runs the real ``training_step`` of the trainer on a CIFAR-10-shaped random
batch, all with the same model and SGD optimizer (momentum 0.9, weight decay 5e-4);
methods are interleaved round-robin (one step each per round) so that they share the
machine's state, after warm-up rounds; the table gives the median step time and, as ``x``,
the median over rounds of its ratio to ``plain`` (one ordinary step on the same batch size
B) in the same round, which is far less sensitive than a ratio of medians to other jobs on a
shared machine coming and going between rounds.

``plain-3B`` is a plain step on a batch three times as large (its input is allocated once,
outside the timing): the floor for any method that runs [x; x+; x-] as one 3B batch on this
hardware. The last column, ``mr/3B``, is mr's step time over that floor, i.e. what the
corners and the two regularizers cost on top of the three passes.

``--malloc keep`` (the default, glibc only; what mr-train does on CPU, ``--keep-freed-memory``,
robustbench_mr/utils/allocator.py) tells malloc to keep freed memory instead of returning it
to the OS, so that large activation buffers are not page-faulted in afresh every step, which
on CPU costs all 3B-sized steps (plain-3B, mr, pgd) several ms; ``--malloc default`` measures
glibc's own policy. GPU runs never pay it (the CUDA caching allocator reuses memory).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from robustbench_mr.models import build_model  # noqa: E402
from robustbench_mr.training.regularizers import HammingAccumulator  # noqa: E402
from robustbench_mr.training.trainer import Method, StepSettings, training_step  # noqa: E402
from robustbench_mr.utils.allocator import keep_freed_memory  # noqa: E402

# "plain-3B" is a plain step on a batch three times as large: the cost of "three parallel
# forward passes" on this machine, the yardstick for mr's overhead beyond them.
METHODS = [("plain", Method.PLAIN, 0), ("plain-3B", Method.PLAIN, 0), ("mr", Method.MR, 0), ("pgd-7", Method.PGD, 7), ("pgd-10", Method.PGD, 10)]


def bench_model(arch: str, batch: int, steps: int, warmup: int, device: torch.device, amp: bool, channels_last: bool) -> dict[str, list[float]]:
    torch.manual_seed(0)
    model = build_model(arch, input_shape=(3, 32, 32), num_classes=10, mean=[0.49, 0.48, 0.45], std=[0.25, 0.24, 0.26]).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    hamming = HammingAccumulator(model, alpha=8.0)
    x3 = torch.rand(3 * batch, 3, 32, 32, device=device)
    if channels_last:
        x3 = x3.contiguous(memory_format=torch.channels_last)
    y3 = torch.randint(0, 10, (3 * batch,), device=device)
    x, y = x3[:batch], y3[:batch]
    gen = torch.Generator(device=device).manual_seed(0)
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if amp else None
    times: dict[str, list[float]] = {name: [] for name, _, _ in METHODS}
    for rnd in range(warmup + steps):
        for name, method, k in METHODS:
            s = StepSettings(method, 8 / 255, 0.8, 2400.0, max(k, 1), None)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            xb, yb = (x3, y3) if name == "plain-3B" else (x, y)
            training_step(model, opt, hamming, xb, yb, s, gen, autocast)  # .item() inside syncs
            if device.type == "cuda":
                torch.cuda.synchronize()
            if rnd >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of num's time / den's time in the same round: robust to a shared
    machine's load changing between rounds (both steps of a round see about the same load)."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="small,large")
    ap.add_argument("--batch-size-small", type=int, default=128)
    ap.add_argument("--batch-size-large", type=int, default=None, help="default 8 on CPU, 128 on CUDA")
    ap.add_argument("--steps", type=int, default=5, help="timed rounds (median)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--malloc", choices=("keep", "default"), default="keep",
                    help="keep: glibc keeps freed memory, as mr-train does on CPU (no page-fault churn; see the docstring); "
                    "default: glibc's own policy")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    malloc = "default"
    if args.malloc == "keep":
        malloc = "keep" if keep_freed_memory() else "default (mallopt unavailable)"
    device = torch.device("cuda" if (args.device == "auto" and torch.cuda.is_available()) else ("cpu" if args.device == "auto" else args.device))
    large_batch = args.batch_size_large or (128 if device.type == "cuda" else 8)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"# device: {where}; steps={args.steps} (median) after {args.warmup} warm-up rounds; amp={args.amp} channels_last={args.channels_last} malloc={malloc}")
    print("# ms: median step time; x: median over rounds of step time / plain's (same B) in that round; mr/3B: the same for mr / plain-3B")
    print(f"{'model':<7} {'batch':>5} " + " ".join(f"{name + ' ms':>11} {'x':>6}" for name, _, _ in METHODS) + f" {'mr/3B':>6}")
    for arch in [m.strip() for m in args.models.split(",") if m.strip()]:
        batch = args.batch_size_small if arch == "small" else large_batch
        times = bench_model(arch, batch, args.steps, args.warmup, device, args.amp, args.channels_last and arch == "large")
        cells = " ".join(f"{statistics.median(times[name]) * 1e3:>11.1f} {ratio(times, name, 'plain'):>6.2f}" for name, _, _ in METHODS)
        print(f"{arch:<7} {batch:>5} {cells} {ratio(times, 'mr', 'plain-3B'):>6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
