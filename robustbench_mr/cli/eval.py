"""``mr-eval``: verify, attack, report and exchange models."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from robustbench_mr.cli import info
from robustbench_mr.cli.common import build_parser, run_main

# Each module adds one subcommand; adding a command touches this list and its own file.
COMMANDS = [info]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser("mr-eval", "Evaluate robustness: exact verification, attacks, reports.", COMMANDS)
    return run_main("mr-eval", parser, argv)


if __name__ == "__main__":
    sys.exit(main())
