"""Runs over many properties: dataset eps-ball runs (``dataset.py``), VNN-COMP instance sets (``vnncomp.py``), and their options.

Kept import-free, so that naming a stage loads no engine."""
