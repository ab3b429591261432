"""``tasd-cpu-expand-exp``: scalar f32 ``math.exp`` becomes range reduction + a polynomial (vectorizable)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir
from torch_mlir.dialects import arith, math

from tasdc.module import ops_named
from tasdc.passes.base import ModulePass

#: Inputs are clamped to [LO, HI]: exp(88.8) overflows f32 (to +inf) and
#: exp(-104) rounds to +0, so clamping changes no f32 result.
HI = 88.8
LO = -104.0
LOG2E = 1.44269504088896341
#: ln 2 split in two (Cody–Waite): ``LN2_HI`` has 9 significant bits, so
#: ``n·LN2_HI`` is exact for |n| < 2¹⁵ and ``x − n·LN2_HI`` loses nothing.
LN2_HI = 0.693359375
LN2_LO = -2.12194440e-4
#: Cephes ``expf`` minimax polynomial on r ∈ [−ln2/2, ln2/2]:
#: exp(r) ≈ 1 + r + r²·P(r), P's coefficients highest degree first.
POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)


@dataclasses.dataclass(frozen=True)
class ExpandExp(ModulePass):
    """Replace every scalar f32 ``math.exp`` with range reduction, a polynomial and a power of two.

    Rule: ``math.exp %x : f32`` → ``c = clamp(x, -104, 88.8)`` (``minnumf`` /
    ``maxnumf``), ``n = floor(c·log2(e) + 1/2)``, ``r = c − n·ln2`` (ln 2 in
    two parts), ``p = 1 + r + r²·P(r)`` (Cephes' degree-5 ``P``, ``POLY``),
    result ``p · 2^⌊n/2⌋ · 2^(n−⌊n/2⌋)`` with each power of two built from
    its exponent bits (two factors so that n from −150 to 128 is exact:
    subnormal results round once, n = 128 overflows to +inf), and a NaN
    input selected through unchanged. Error below 1 ulp wherever the result
    is a normal f32 (0.99 ulp, measured over all 2³² inputs against float64
    exp), within one unit of 2⁻¹⁴⁹ on subnormal results; +inf / +0 / NaN
    exact at the edges; arithmetic only. Other element types and
    vector/tensor ``math.exp`` are left alone.

    Why: ``convert-math-to-libm`` turns ``math.exp`` into a call of libm's
    ``expf`` per element, which LLVM cannot vectorize; softmax, sigmoid,
    SiLU and ``math-expand-ops``' tanh all go through it.
    """

    name: ClassVar[str] = "tasd-cpu-expand-exp"

    def run(self, module: ir.Module) -> None:
        found = [op for op in ops_named(module, "math.exp") if isinstance(op.results[0].type, ir.F32Type)]
        with module.context:
            for op in found:
                self._expand(op)

    @staticmethod
    def _expand(op: ir.OpView) -> None:
        f32 = ir.F32Type.get()
        i32 = ir.IntegerType.get_signless(32)
        with ir.InsertionPoint(op), op.location:

            def const(v: float) -> ir.Value:
                return arith.ConstantOp(f32, ir.FloatAttr.get(f32, v)).result

            def iconst(v: int) -> ir.Value:
                return arith.ConstantOp(i32, ir.IntegerAttr.get(i32, v)).result

            def pow2(n: ir.Value) -> ir.Value:  # 2^n for n in [-126, 127], from the exponent bits
                bits = arith.ShLIOp(arith.AddIOp(n, iconst(127)).result, iconst(23)).result
                return arith.BitcastOp(f32, bits).result

            x = op.operands[0]
            c = arith.MaxNumFOp(arith.MinNumFOp(x, const(HI)).result, const(LO)).result
            nf = math.FloorOp(arith.AddFOp(arith.MulFOp(c, const(LOG2E)).result, const(0.5)).result).result
            r = arith.SubFOp(c, arith.MulFOp(nf, const(LN2_HI)).result).result
            r = arith.SubFOp(r, arith.MulFOp(nf, const(LN2_LO)).result).result
            p = const(POLY[0])
            for a in POLY[1:]:
                p = arith.AddFOp(arith.MulFOp(p, r).result, const(a)).result
            r2 = arith.MulFOp(r, r).result
            p = arith.AddFOp(arith.AddFOp(arith.MulFOp(p, r2).result, r).result, const(1.0)).result
            n = arith.FPToSIOp(i32, nf).result
            half = arith.ShRSIOp(n, iconst(1)).result
            rest = arith.SubIOp(n, half).result
            value = arith.MulFOp(arith.MulFOp(p, pow2(half)).result, pow2(rest)).result
            is_nan = arith.CmpFOp(arith.CmpFPredicate.UNO, x, x).result
            value = arith.SelectOp(is_nan, x, value).result
        op.results[0].replace_all_uses_with(value)
        op.operation.erase()
