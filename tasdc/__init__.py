"""tasdc: run unstructured-sparse and dense DNNs on structured N:M sparse hardware.

The Python API in three calls::

    from tasdc import CompileOptions, compile_model
    result = compile_model("model.pt2", options=CompileOptions(config="2:4+1:4"))
    print(result.report.table())   # per-layer density, error, lossless
    y = result(x)                  # run on the CPU runtime (Numba N:M kernels)

See :mod:`tasdc.compiler` (stages and options), :mod:`tasdc.importer`
(front end), :mod:`tasdc.decompose` (the TASD library) and
:mod:`tasdc.simulate` (simulated accelerators), :mod:`tasdc.dynamo`
(``torch.compile(model, backend=tasdc.dynamo_backend(config="2:4"))``).
"""

from tasdc.compiler import CompileOptions, CompileResult, compile_model
from tasdc.dynamo import dynamo_backend
from tasdc.importer import import_model

__all__ = ["CompileOptions", "CompileResult", "compile_model", "dynamo_backend", "import_model"]
