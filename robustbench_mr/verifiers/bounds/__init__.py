"""Sound bounds: the batched graph engine (``engine.py``: IBP, CROWN, alpha-CROWN), the chain kernels and LP tightening, and the method registry (``methods.py``).

Kept import-free, so that naming a stage loads no engine."""
