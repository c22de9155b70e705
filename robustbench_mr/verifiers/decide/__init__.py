"""Deciding one property under one ``Deadline``: falsifier (PGD on the spec margin), bounds, input split, ReLU-split branch and bound, MILP; and one VNN-COMP instance.

Kept import-free, so that naming a stage loads no engine."""
