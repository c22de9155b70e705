"""``mr-eval``: verify, attack, report and exchange models."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from robustbench_mr.cli import info
from robustbench_mr.cli import verify as verify_cmd
from robustbench_mr.cli import attack_cmd, benchmark_cmd, report_cmd
from robustbench_mr.cli import export_cmd, import_cmd, vnncomp_cmd, vnnlib_cmd
from robustbench_mr.cli.common import build_parser, run_main

# Each module adds one subcommand; adding a command touches this list and its own file.
COMMANDS = [info, verify_cmd, attack_cmd, benchmark_cmd, report_cmd, vnnlib_cmd, vnncomp_cmd, export_cmd, import_cmd]


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # run as the mr-eval program: time limits count from the process's start
        from robustbench_mr.deadline import mark_program_start

        mark_program_start()
    parser = build_parser("mr-eval", "Evaluate robustness: exact verification, attacks, reports.", COMMANDS)
    return run_main("mr-eval", parser, argv)


if __name__ == "__main__":
    sys.exit(main())
