"""``tasd-sparsity-analysis``: per-layer weight statistics as attributes and JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

from torch_mlir import ir

from tasdc.contractions import scan
from tasdc.decompose import block_histogram, cheapest_lossless, density, parse_config
from tasdc.diagnostics import remark
from tasdc.errors import TasdcError
from tasdc.passes.base import ModulePass
from tasdc.progress import progress
from tasdc.report import annotate


@dataclasses.dataclass(frozen=True)
class SparsityAnalysis(ModulePass):
    """Annotate every decomposable contraction with its weight statistics.

    For each contraction with a constant weight (the same candidates as
    ``tasd-decompose-weights``) it records, in ``tasd.layer``/``tasd.stats``:
    the GEMM shape ``[batch, M, K, N]`` with the weight as ``A[M, K]``, the
    weight density, the histograms of non-zeros per aligned block along the
    reduction axis for M = 4 and M = 8 (``hist_m4[i]`` = blocks holding ``i``
    non-zeros), and the cheapest lossless series built from ``patterns``
    (at most ``max-terms`` terms; ``dense`` when none is lossless). Skipped
    contractions get a remark and a ``skipped`` reason. With ``json=PATH`` the
    same data is written as a JSON list.
    """

    name: ClassVar[str] = "tasd-sparsity-analysis"
    patterns: tuple[str, ...] = ("1:4", "2:4", "1:8", "2:8", "4:8")
    max_terms: int = 2
    json: str = ""

    def __post_init__(self) -> None:
        for pattern in self.patterns:
            config = parse_config(pattern)
            if len(config.terms) != 1:
                raise ValueError(f"patterns must be single N:M terms, got '{pattern}'")
        if self.max_terms < 1:
            raise ValueError(f"max-terms must be >= 1, got {self.max_terms}")

    def run(self, module: ir.Module) -> None:
        found = scan(module)
        summary: list[dict[str, Any]] = []
        for candidate in progress(found.candidates, desc=self.name, unit="layer"):
            weight = candidate.weight
            lossless = cheapest_lossless(weight, list(self.patterns), candidate.axis, self.max_terms)
            stats = {
                "kind": candidate.kind,
                "gemm": list(candidate.gemm),
                "density": density(weight),
                "hist_m4": [int(v) for v in block_histogram(weight, 4, candidate.axis)],
                "hist_m8": [int(v) for v in block_histogram(weight, 8, candidate.axis)],
                "cheapest_lossless": str(lossless) if lossless is not None else "dense",
            }
            annotate(candidate.op, candidate.layer, stats)
            summary.append({"layer": candidate.layer, "op": candidate.op.name, "shape": list(weight.shape), **stats})
        for skipped in found.skipped:
            annotate(skipped.op, skipped.layer, {"skipped": skipped.reason})
            remark(skipped.op.location, f"{skipped.layer} ({skipped.op.name}) is not a TASD candidate: {skipped.reason}")
            summary.append({"layer": skipped.layer, "op": skipped.op.name, "skipped": skipped.reason})
        if self.json:
            try:
                Path(self.json).write_text(json.dumps(summary, indent=2) + "\n")
            except OSError as error:
                raise TasdcError(f"tasd-sparsity-analysis: cannot write {self.json}: {error.strerror}") from None
