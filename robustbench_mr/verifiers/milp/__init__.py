"""The one place a ReLU becomes constraints (``milp/relu_encoding.py``), the MILP models of the chain and graph forms, and the solver registry (``solvers.py``).

Kept import-free, so that naming a stage loads no engine."""
