"""``mr-eval info ckpt.pt``: print a checkpoint's metadata (a safe way to inspect a file)."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print a checkpoint's metadata", description=__doc__)
    p.add_argument("checkpoint", help="a .pt file written by mr-train")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from robustbench_mr import load_checkpoint

    model, meta = load_checkpoint(args.checkpoint)
    d = meta.to_dict()
    d["sha256"] = meta.sha256
    d["parameters"] = sum(p.numel() for p in model.parameters())
    print(json.dumps(d, indent=2, sort_keys=True, default=str))
    return 0
