"""MLIR text of small test functions, shared by the CPU code-path tests."""

from __future__ import annotations


def tensor_type(shape: tuple[int, ...]) -> str:
    """``tensor<AxBxf32>`` for ``shape``."""
    return f"tensor<{'x'.join(map(str, shape))}xf32>"


def matmul_text(op: str, a: tuple[int, ...], b: tuple[int, ...], c: tuple[int, ...], accumulate: bool) -> str:
    """``@main`` computing one ``op`` (``linalg.matmul``/``batch_matmul``) of
    ``a`` and ``b``, into a zero fill or, with ``accumulate``, into ``2*c``."""
    t = tensor_type
    if accumulate:
        # Accumulate into 2*c: the init is read, not a fill. (Not into the
        # argument itself: a function returning an in-place update of its
        # argument fails in buffer deallocation on the loop path as well.)
        return f"""
func.func @main(%a: {t(a)}, %b: {t(b)}, %c: {t(c)}) -> {t(c)} {{
  %e = tensor.empty() : {t(c)}
  %c2 = linalg.add ins(%c, %c : {t(c)}, {t(c)}) outs(%e : {t(c)}) -> {t(c)}
  %y = {op} ins(%a, %b : {t(a)}, {t(b)}) outs(%c2 : {t(c)}) -> {t(c)}
  return %y : {t(c)}
}}"""
    return f"""
func.func @main(%a: {t(a)}, %b: {t(b)}) -> {t(c)} {{
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : {t(c)}
  %i = linalg.fill ins(%z : f32) outs(%e : {t(c)}) -> {t(c)}
  %y = {op} ins(%a, %b : {t(a)}, {t(b)}) outs(%i : {t(c)}) -> {t(c)}
  return %y : {t(c)}
}}"""
