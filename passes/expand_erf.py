"""``tasd-cpu-expand-erf``: scalar f32 ``math.erf`` becomes a rational polynomial (vectorizable)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir
from torch_mlir.dialects import arith

from tasdc.module import ops_named
from tasdc.passes.base import ModulePass

#: Numerator (odd powers x¹³ … x¹, highest first) and denominator (even powers
#: x⁸ … x⁰) of the f32 approximation of erf on [-4, 4] used by Eigen and XLA
#: (``ErfImpl32``); outside that interval erf is ±1 in f32.
ALPHA = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
         -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
BETA = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
        -1.42647390514189e-02)
CLAMP = 4.0


@dataclasses.dataclass(frozen=True)
class ExpandErf(ModulePass):
    """Replace every scalar f32 ``math.erf`` with ``p(x)/q(x)`` on ``x`` clamped to [-4, 4].

    Rule: ``math.erf %x : f32`` → ``c = maximumf(minimumf(x, 4), -4)``,
    ``p = c·A(c²)`` (degree-13 odd numerator), ``q = B(c²)`` (degree-8 even
    denominator), ``p / q`` — arithmetic only, with the coefficients in
    ``ALPHA`` / ``BETA``. Maximum error 4.3e-7 absolute (≤ 8 ulp) against
    the exact erf, NaN stays NaN. Other element types and vector/tensor
    ``math.erf`` are left alone.

    Why: ``convert-math-to-libm`` turns ``math.erf`` into a call of libm's
    ``erff`` per element, which LLVM cannot vectorize; GELU (BERT, the
    example transformer) spent ~30 % of a dense run there. Upstream's own
    erf approximation is only reachable from a test pass in this MLIR build,
    and ``math-expand-ops`` does not expand ``erf``.
    """

    name: ClassVar[str] = "tasd-cpu-expand-erf"

    def run(self, module: ir.Module) -> None:
        found = [op for op in ops_named(module, "math.erf") if isinstance(op.results[0].type, ir.F32Type)]
        with module.context:
            for op in found:
                self._expand(op)

    @staticmethod
    def _expand(op: ir.OpView) -> None:
        f32 = ir.F32Type.get()
        with ir.InsertionPoint(op), op.location:

            def const(v: float) -> ir.Value:
                return arith.ConstantOp(f32, ir.FloatAttr.get(f32, v)).result

            x = op.operands[0]
            clamped = arith.MaximumFOp(arith.MinimumFOp(x, const(CLAMP)).result, const(-CLAMP)).result
            x2 = arith.MulFOp(clamped, clamped).result
            p = const(ALPHA[0])
            for a in ALPHA[1:]:
                p = arith.AddFOp(arith.MulFOp(p, x2).result, const(a)).result
            p = arith.MulFOp(p, clamped).result
            q = const(BETA[0])
            for b in BETA[1:]:
                q = arith.AddFOp(arith.MulFOp(q, x2).result, const(b)).result
            value = arith.DivFOp(p, q).result
        op.results[0].replace_all_uses_with(value)
        op.operation.erase()
