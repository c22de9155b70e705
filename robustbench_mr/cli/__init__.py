"""Command-line front ends. Each subcommand lives in its own module with
``add_parser(subparsers)`` and ``run(args) -> int``; flags become a frozen options
dataclass that the public API takes."""
