"""Where one property's time went: seconds per stage and what the complete search did, in every
result's details (``PropertyResult.stages`` / ``search`` / ``domains`` / ``max_depth``) and in
``bench/vnncomp.py``'s table.

Stages: ``load`` (reading the model and the property, VNN-COMP instances), ``attack`` (random
samples, PGD on the spec margin, the warm start), ``bounds`` (interval, CROWN, LP, alpha-CROWN
on the whole box), ``input_split`` (input-domain branch and bound), ``bab`` (ReLU-split branch
and bound), ``refine`` (intermediate bounds tightened by bound search, ``decide/refine.py``),
``milp`` (the MILP solves). The clock is one wall clock: each ``enter`` closes the
stage before it, so the stages add up to the time the decision took.
"""

from __future__ import annotations

import dataclasses
import time

from robustbench_mr.verifiers.status import PropertyResult

STAGES = ("load", "attack", "bounds", "input_split", "bab", "refine", "milp")
SEARCHES = ("attack", "bounds", "input-split", "relu-bab", "relu-bab+milp", "milp")  # relu-bab+milp: bab on its share, the MILP on the rest


class StageClock:
    """Seconds per stage of one decision (``enter(stage)`` closes the previous stage), the search
    that ran, and its counters."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.search = ""
        self.domains = 0
        self.max_depth = 0
        self._stage: str | None = None
        self._since = time.perf_counter()

    def enter(self, stage: str, search: str | None = None) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
        self._close()
        self._stage = stage
        if search is not None:
            self.search = search

    def pause(self) -> None:
        """Close the current stage; time until the next ``enter`` counts nowhere (a nested
        decision with its own clock runs then: ``absorb`` its result)."""
        self._close()
        self._stage = None

    def absorb(self, r: PropertyResult) -> None:
        """Add a nested decision's stages and counters (several properties of one instance)."""
        self.seconds = merge_stages(self.seconds, getattr(r, "stages", {}))  # getattr: a result without a clock adds nothing
        self.search = getattr(r, "search", "") or self.search
        self.domains += getattr(r, "domains", 0)
        self.max_depth = max(self.max_depth, getattr(r, "max_depth", 0))

    def _close(self) -> None:
        now = time.perf_counter()
        if self._stage is not None:
            self.seconds[self._stage] = self.seconds.get(self._stage, 0.0) + now - self._since
        self._since = now

    def stamp(self, r: PropertyResult) -> PropertyResult:
        """``r`` with this clock's stages (the current stage closed) and counters."""
        self._close()
        return dataclasses.replace(r, stages={k: round(v, 4) for k, v in self.seconds.items()}, search=self.search or r.search,
                                   domains=self.domains or r.domains, max_depth=self.max_depth or r.max_depth)


def merge_stages(*parts: dict[str, float]) -> dict[str, float]:
    """Stage seconds added up (several properties of one instance, or verify_one's own steps)."""
    out: dict[str, float] = {}
    for p in parts:
        for k, v in p.items():
            out[k] = round(out.get(k, 0.0) + float(v), 4)
    return out
