"""Exact verification: network -> affine/ReLU form -> bounds -> MILP (HiGHS)."""
