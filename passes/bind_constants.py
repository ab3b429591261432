"""``tasd-cpu-bind-constants``: large constant tensors become arguments bound at load time."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
from torch_mlir import ir

from tasdc.elements import UnsupportedElementType, as_elements_attr, element_dtype, read_elements, read_elements_transposed
from tasdc.errors import PipelineError
from tasdc.passes.base import ModulePass

#: Argument attribute holding the constant's elements attribute.
BOUND_ATTR = "tasd.bound"
#: Argument attribute: the bound value is ``transpose(BOUND_ATTR, permutation)``.
PERMUTATION_ATTR = "tasd.bound_permutation"
#: One-shot bufferization's marker of a read-only function argument.
WRITABLE_ATTR = "bufferization.writable"


def _function(module: ir.Module, name: str) -> ir.OpView | None:
    for op in module.body.operations:
        if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == name:
            return op
    return None


def _arg_dicts(fn: ir.OpView, count: int) -> list[dict[str, ir.Attribute]]:
    if "arg_attrs" not in fn.attributes:
        return [{} for _ in range(count)]
    return [{a.name: a.attr for a in ir.DictAttr(d)} for d in ir.ArrayAttr(fn.attributes["arg_attrs"])]


def _set_arg_dicts(fn: ir.OpView, dicts: list[dict[str, ir.Attribute]]) -> None:
    context = fn.operation.context
    fn.attributes["arg_attrs"] = ir.ArrayAttr.get([ir.DictAttr.get(d, context) for d in dicts], context)


def _transpose_user(value: ir.Value) -> ir.OpView | None:
    """The ``linalg.transpose`` that is the only user of ``value`` (as its input), if any."""
    uses = list(value.uses)
    if len(uses) != 1:
        return None
    owner = uses[0].owner
    if owner.name != "linalg.transpose" or uses[0].operand_number != 0 or len(owner.results) != 1:
        return None
    return owner


@dataclasses.dataclass(frozen=True)
class BindConstants(ModulePass):
    """Turn every large constant tensor of function ``@entry`` into a
    trailing, read-only argument of that function, to be bound at load time.

    Rule: an ``arith.constant`` at the top level of ``@entry`` whose value is
    a ``dense_resource`` or non-splat dense tensor of a readable element type
    (f16/bf16/f32/f64, integers) and at least ``min-bytes`` bytes is
    replaced by a new argument of the same type carrying
    ``{bufferization.writable = false, tasd.bound = <the value>}``. When its
    only user is a ``linalg.transpose`` (``nn.Linear``'s weight), the
    transpose is folded: its result becomes the argument, with
    ``tasd.bound_permutation`` (the bound value is the constant transposed;
    the runtime transposes once at load time instead of on every call).
    Splats and small constants stay in the code (they fold into loops).

    Why: constants embedded in the code become data of the machine code
    (hundreds of MB for BERT-base), which LLVM translates and the compile
    cache stores, hashes and relocates on every load. As arguments the
    machine code depends only on shapes, so the compile cache entry is the
    same for any weights of the same shapes; :func:`bound_values` reads the
    values back for the runtime, which passes them on every call.
    """

    name: ClassVar[str] = "tasd-cpu-bind-constants"

    entry: str = "main"
    min_bytes: int = 1024

    def __post_init__(self) -> None:
        if self.min_bytes < 0:
            raise ValueError(f"min-bytes must be >= 0, got {self.min_bytes}")

    def run(self, module: ir.Module) -> None:
        with module.context:
            self._run(module)

    def _run(self, module: ir.Module) -> None:
        fn = _function(module, self.entry)
        if fn is None or not fn.regions[0].blocks:
            raise PipelineError(f"{self.name}: no function @{self.entry} with a body")
        block = fn.regions[0].blocks[0]
        ftype = ir.FunctionType(ir.TypeAttr(fn.attributes["function_type"]).value)
        dicts = _arg_dicts(fn, len(ftype.inputs))
        inputs = list(ftype.inputs)
        false = ir.BoolAttr.get(False, module.context)
        # Select first: the loop erases transposes and tensor.empty ops of the
        # block, whose Python handles must not be touched afterwards.
        constants = [op for op in block.operations if op.operation.name == "arith.constant" and self._wanted(op)]
        for op in constants:
            value = op.results[0]
            attributes = {WRITABLE_ATTR: false, BOUND_ATTR: op.attributes["value"]}
            replaced = value
            transpose = _transpose_user(value)
            if transpose is not None:
                attributes[PERMUTATION_ATTR] = transpose.attributes["permutation"]
                replaced = transpose.results[0]
            argument = block.add_argument(replaced.type, op.location)
            replaced.replace_all_uses_with(argument)
            if transpose is not None:
                init = transpose.operands[1]
                transpose.operation.erase()
                if isinstance(init.owner, ir.OpView) and init.owner.name == "tensor.empty" and not list(init.uses):
                    init.owner.erase()
            op.operation.erase()
            inputs.append(argument.type)
            dicts.append(attributes)
        if len(inputs) == len(ftype.inputs):
            return
        fn.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(inputs, list(ftype.results), module.context))
        _set_arg_dicts(fn, dicts)

    def _wanted(self, op: ir.OpView) -> bool:
        value_type = op.results[0].type
        if not isinstance(value_type, ir.RankedTensorType) or not ir.RankedTensorType(value_type).has_static_shape:
            return False
        attr = as_elements_attr(op.attributes["value"])
        if attr is None or (isinstance(attr, ir.DenseElementsAttr) and attr.is_splat):
            return False
        shaped = ir.RankedTensorType(value_type)
        try:
            dtype = element_dtype(shaped.element_type)
        except UnsupportedElementType:
            return False
        if dtype == np.bool_:
            return False
        return int(np.prod(shaped.shape, dtype=np.int64)) * dtype.itemsize >= self.min_bytes


def bound_values(module: ir.Module, entry: str = "main", strip: bool = True) -> list[np.ndarray]:
    """The values of ``@entry``'s bound arguments (``tasd.bound``), in argument order.

    Each is read from its attribute and, with ``tasd.bound_permutation``,
    transposed (C-contiguous). An untransposed value is a read-only view of
    its blob when :func:`tasdc.elements.resource_view` can check one (no
    copy; the code only reads bound arguments; blobs are never changed:
    tasdc's importer copies a model's parameters into them). With ``strip``
    the two attributes are removed afterwards, so the module no longer
    refers to the weights (the compile cache key then covers only the code).
    """
    fn = _function(module, entry)
    if fn is None or "arg_attrs" not in fn.attributes:
        return []
    dicts = _arg_dicts(fn, 0)
    values = []
    for attributes in dicts:
        if BOUND_ATTR not in attributes:
            continue
        permutation = list(ir.DenseI64ArrayAttr(attributes[PERMUTATION_ATTR])) if PERMUTATION_ATTR in attributes else None
        if permutation == [1, 0]:  # nn.Linear's weight: transposed while it is read
            array = read_elements_transposed(attributes[BOUND_ATTR])
        else:
            array = read_elements(attributes[BOUND_ATTR], copy=False)
            if permutation is not None:
                array = array.transpose(permutation)
        values.append(np.ascontiguousarray(array))
        if strip:
            attributes.pop(BOUND_ATTR)
            attributes.pop(PERMUTATION_ATTR, None)
    if strip:
        with module.context:
            _set_arg_dicts(fn, dicts)
    return values
