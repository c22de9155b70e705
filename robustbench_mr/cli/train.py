"""``mr-train``: train models with manifold regularization (and baselines)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from robustbench_mr.cli import train_cmd
from robustbench_mr.cli.common import build_parser, run_main

COMMANDS: list = [train_cmd]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser("mr-train", "Train locally stable classifiers (manifold regularization).", COMMANDS)
    return run_main("mr-train", parser, argv)


if __name__ == "__main__":
    sys.exit(main())
