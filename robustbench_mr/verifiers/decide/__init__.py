"""Deciding one property under one ``Deadline``: falsifier (PGD on the spec margin), bounds, input split, ReLU-split branch and bound, MILP; and one VNN-COMP instance.

Kept import-free, so that naming a stage loads no engine."""

# ReLU-split bab's branching rules (``bab.py``): BaBSR (Bunel et al. 2020) and filtered smart
# branching (De Palma et al. 2021); here so that the CLI's ``--branching`` loads no engine
BRANCHING = ("babsr", "fsb")
DEFAULT_BRANCHING = "babsr"
