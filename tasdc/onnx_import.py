"""ONNX models in: torch-mlir's own ONNX importer, then down to linalg-on-tensors.

``import_onnx(path)`` reads an ``.onnx`` file with the ``onnx`` package
(initializers stored as external data files next to the model are loaded
too), checks it (``onnx.checker``, opset in the range the installed ``onnx``
knows), infers shapes, imports it with ``torch_mlir.extras.onnx_importer``
(the library behind ``torch-mlir-import-onnx``) and lowers it with
torch-mlir's pipelines ``torch-onnx-to-torch-backend-pipeline`` and
``torch-backend-to-linalg-on-tensors-backend-pipeline``, as the torch path
does. Initializers become ``dense_resource`` constants, the same kind of
weight constants the TASD passes read from the ``.pt2`` path. The entry
function is called ``main`` like the torch path's.

Every way a file can be bad (not a protobuf, truncated, unsupported opset,
missing external data, an op torch-mlir cannot convert) raises an
:class:`~tasdc.errors.InputError` with one line naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch_mlir import ir
from torch_mlir.passmanager import PassManager

from tasdc.diagnostics import capture
from tasdc.errors import InputError

#: torch-mlir's lowering, ONNX ops (``torch.operator "onnx.*"``) → torch → linalg.
ONNX_TO_LINALG = (
    "builtin.module(torch-onnx-to-torch-backend-pipeline,"
    "torch-backend-to-linalg-on-tensors-backend-pipeline)"
)

#: The entry function's name (the CPU runtime and the torch path use ``main``).
ENTRY = "main"


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def load_onnx(path: Path) -> Any:
    """Read, check and shape-infer ``path``; returns the ``onnx.ModelProto``."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise InputError(f"{path}: not a valid ONNX model (cannot decode the protobuf: {_first_line(error)})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise InputError(f"{path}: not a valid ONNX model (no graph nodes)")
    known = onnx.defs.onnx_opset_version()
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not 1 <= opset.version <= known:
            raise InputError(f"{path}: unsupported ONNX opset {opset.version} (this onnx knows 1 to {known})")
    for tensor in model.graph.initializer:
        if onnx.external_data_helper.uses_external_data(tensor):
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            if not (path.parent / location).is_file():
                raise InputError(f"{path}: missing external data file {location} (initializer '{tensor.name}')")
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except Exception as error:  # onnx validates locations (no paths outside the folder)
        raise InputError(f"{path}: bad external data: {_first_line(error)}") from None
    try:
        onnx.checker.check_model(model)
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as error:  # onnx.checker.ValidationError, InferenceError, …
        raise InputError(f"{path}: invalid ONNX model: {_first_line(error)}") from None
    return model


def flatten_weight_matmuls(model: Any) -> int:
    """Rewrite ``MatMul(A[..., K], W[K, N])`` with a constant 2-D ``W`` and a
    statically shaped A of rank > 2 as ``Reshape → 2-D MatMul → Reshape``.

    ``torch.export`` already writes ``nn.Linear`` on token sequences as a 2-D
    matmul of the flattened activations; ONNX keeps the batched ``MatMul``,
    which torch-mlir lowers to a ``linalg.batch_matmul`` on a broadcast copy
    of the weight, invisible to the TASD passes. Flattening makes both front
    ends hand the passes the same 2-D weight contraction. Returns how many
    nodes were rewritten.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: tuple(init.dims) for init in graph.initializer}
    shapes: dict[str, list[int]] = {}
    for info in [*graph.input, *graph.value_info]:
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = [d.dim_value for d in dims]
    rewritten: list[Any] = []
    count = 0
    for node in graph.node:
        a = node.input[0] if node.op_type == "MatMul" else ""
        w = node.input[1] if node.op_type == "MatMul" else ""
        if node.op_type != "MatMul" or len(weights.get(w, ())) != 2 or len(shapes.get(a, [])) <= 2:
            rewritten.append(node)
            continue
        lead, (k, n) = shapes[a][:-1], weights[w]
        stem = f"{node.name or node.output[0]}__tasdc_flat"
        graph.initializer.extend([
            numpy_helper.from_array(np.array([-1, k], dtype=np.int64), f"{stem}_in_shape"),
            numpy_helper.from_array(np.array([*lead, n], dtype=np.int64), f"{stem}_out_shape"),
        ])
        rewritten += [
            helper.make_node("Reshape", [a, f"{stem}_in_shape"], [f"{stem}_a2d"], name=f"{stem}_in"),
            helper.make_node("MatMul", [f"{stem}_a2d", w], [f"{stem}_y2d"], name=f"{stem}_matmul"),
            helper.make_node("Reshape", [f"{stem}_y2d", f"{stem}_out_shape"], list(node.output), name=f"{stem}_out"),
        ]
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(rewritten)
    return count


def import_onnx(path: str | Path, context: ir.Context) -> tuple[ir.Module, Any]:
    """``path`` as a linalg-on-tensors module in ``context``, plus the ModelProto.

    The ModelProto owns the initializers' bytes that the module's
    ``dense_resource`` constants point to: keep it as long as the module.
    """
    from torch_mlir.extras import onnx_importer

    path = Path(path)
    model = load_onnx(path)
    model.graph.name = ENTRY
    if flatten_weight_matmuls(model):
        import onnx

        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    try:
        info = onnx_importer.ModelInfo(model)
        with context:
            module = info.create_module(context=context)
            importer = onnx_importer.NodeImporter.define_function(info.main_graph, module.operation)
            importer.import_all()
    except (onnx_importer.OnnxImportError, ValueError, KeyError, AssertionError) as error:
        raise InputError(f"{path}: torch-mlir's ONNX importer refused the model: {_first_line(error)}") from None
    with context, capture(context) as log:
        try:
            PassManager.parse(ONNX_TO_LINALG).run(module.operation)
        except ir.MLIRError as error:
            diagnostics = list(getattr(error, "error_diagnostics", []))
            detail = diagnostics[0].message if diagnostics else (log.errors[0].message if log.errors else _first_line(error))
            raise InputError(f"{path}: torch-mlir cannot lower the ONNX model to linalg-on-tensors: {detail}") from None
    return module, model
