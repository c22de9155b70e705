"""Bound engine throughput: CROWN and alpha-CROWN of the graph engine (verifiers/engine) on
oval21's cifar_wide_kw and mnist_fc's 256x4 net, at batch 1, 64 and 512 sub-problems (random
sub-boxes of the instance's input box, as a branch-and-bound step would hand over), on CPU and
on CUDA when one is available; beside it, the chain engine's numpy CROWN (bounds.py), one box
at a time, on the same boxes. Prints ms per call and sub-problems bounded per second.

    .venv/bin/python bench/bounds.py [--shared ../shared] [--batches 1,64,512] [--repeats 3] [--nets mnist_fc/256x4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from robustbench_mr.verifiers.bounds.chain import crown_bounds, spec_lower_bounds
from robustbench_mr.verifiers.bounds.engine import node_bounds, spec_lower
from robustbench_mr.verifiers.form.from_onnx import load_onnx_graph
from robustbench_mr.verifiers.form.chain_from_onnx import load_onnx
from robustbench_mr.verifiers.spec.vnnlib import read_vnnlib

NETS = {
    "oval21/cifar_wide_kw": ("oval21/onnx/cifar_wide_kw.onnx", "oval21/vnnlib", "cifar_wide_kw"),
    "mnist_fc/256x4": ("mnist_fc/onnx/mnist-net_256x4.onnx", "mnist_fc/vnnlib", "prop_0_0.03"),
}


def _sub_boxes(lo: np.ndarray, hi: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n random sub-boxes (each dimension halved at random with probability 0.1, as splits would)."""
    los, his = np.repeat(lo[None], n, 0), np.repeat(hi[None], n, 0)
    if n > 1:
        mid = (lo + hi) / 2
        split = rng.random((n, lo.size)) < 0.1
        upper = rng.random((n, lo.size)) < 0.5
        los = np.where(split & upper, mid, los)
        his = np.where(split & ~upper, mid, his)
    return los, his


def _time(fn, repeats: int) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared"))
    ap.add_argument("--batches", default="1,64,512")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--alpha-iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nets", default=",".join(NETS), help="which of: " + ", ".join(NETS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.shared) / "data" / "vnncomp"
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    batches = [int(b) for b in args.batches.split(",")]
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, threads {args.threads}, devices {devices}")
    print(f"{'net':22} {'device':6} {'method':14} {'batch':>5} {'ms/call':>10} {'boxes/s':>10}")
    for label in args.nets.split(","):
        onnx_rel, vdir, prefix = NETS[label]
        onnx = root / onnx_rel
        vnn = sorted((root / vdir).glob(prefix + "*.vnnlib"))[0]
        chain = load_onnx(onnx)
        graph0 = load_onnx_graph(onnx)
        prop = read_vnnlib(vnn, graph0.num_inputs, graph0.num_outputs)[0]
        C = np.vstack([c.C for c in prop.clauses])
        for B in batches:
            los, his = _sub_boxes(prop.lower, prop.upper, B, rng)
            # the chain engine (numpy CROWN), one box at a time; at most 64 boxes timed, scaled
            k = min(B, 64)
            t_old = _time(lambda: [spec_lower_bounds(chain, crown_bounds(chain, los[i], his[i]), los[i], his[i], C) for i in range(k)], 1) * B / k
            print(f"{label:22} {'cpu':6} {'chain-crown':14} {B:5d} {1e3 * t_old:10.1f} {B / t_old:10.1f}")
            for dev in devices:
                graph = graph0.to(dev)
                lo_t = torch.as_tensor(los, device=dev).reshape(B, *graph.input_shape)
                hi_t = torch.as_tensor(his, device=dev).reshape(B, *graph.input_shape)
                Ct = torch.as_tensor(C, device=dev)

                def crown() -> None:
                    spec_lower(graph, node_bounds(graph, lo_t, hi_t, "crown"), Ct, "crown")
                    if dev == "cuda":
                        torch.cuda.synchronize()

                def alpha() -> None:
                    spec_lower(graph, node_bounds(graph, lo_t, hi_t, "crown"), Ct, "alpha", alpha_iters=args.alpha_iters)
                    if dev == "cuda":
                        torch.cuda.synchronize()

                for name, fn in (("crown", crown), (f"alpha({args.alpha_iters})", alpha)):
                    t = _time(fn, args.repeats if B < 512 else 1)
                    print(f"{label:22} {dev:6} {name:14} {B:5d} {1e3 * t:10.1f} {B / t:10.1f}", flush=True)


if __name__ == "__main__":
    main()
