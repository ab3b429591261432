"""``tasd-approximate-weights``: each selected weight constant replaced by its series' approximation, in place."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
from torch_mlir import ir

from tasdc.contractions import Candidate, scan
from tasdc.decompose import decompose, parse_config
from tasdc.elements import make_elements, read_elements
from tasdc.errors import SelectionError
from tasdc.passes.base import ModulePass
from tasdc.passes.select_series import CONFIG_ATTR


@dataclasses.dataclass(frozen=True)
class ApproximateWeights(ModulePass):
    """Replace the stored value of every weight whose contraction carries a
    non-dense ``tasd.config`` by the exact sum of that series' terms; change
    nothing else.

    The terms of a series have disjoint supports and keep the weight's own
    values, so the sum ``Ŵ`` is the weight with the dropped entries set to
    zero: it is written back in the constant's stored layout and element
    type (through the same view ops the contraction reads it with: transposes,
    reshapes, broadcasts, ``arith.extf``), exactly. The module then computes
    what the selected series compute, ``Σ Aᵢ·B = Ŵ·B`` up to the order of
    the float sums, with the dense model's ops: its code is the dense model's
    code, and since the CPU runtime binds weights at load time
    (``tasd-cpu-bind-constants``), every selection shares the dense model's
    compiled object. TASDER's measured probes run this form; the chosen
    selection is then compiled with ``tasd-decompose-weights``.

    A constant read by several contractions must be approximated the same way
    by all of them (same series, same view); otherwise the pass fails naming
    both layers (its stored value cannot hold two approximations). Activation
    series (``tasd.act_config``) are left to ``tasd-decompose-activations``.
    """

    name: ClassVar[str] = "tasd-approximate-weights"

    def run(self, module: ir.Module) -> None:
        found = scan(module)
        # Every contraction per stored constant, with the series each asks for.
        by_constant: dict[ir.Operation, list[tuple[Candidate, str]]] = {}
        for cand in found.candidates:
            config = ir.StringAttr(cand.op.attributes[CONFIG_ATTR]).value if CONFIG_ATTR in cand.op.attributes else "dense"
            by_constant.setdefault(cand.constant.operation, []).append((cand, config))
        for index, users in enumerate(by_constant.values()):
            wanted = {config for _, config in users}
            if wanted == {"dense"}:
                continue
            first, config = next((c, s) for c, s in users if s != "dense")
            for other, other_config in users:
                if other_config != config or other.view_key != first.view_key:
                    raise SelectionError(
                        f"{first.layer} and {other.layer} read one weight constant but ask for "
                        f"{config} and {other_config}{'' if other_config != config else ' through different views'}: "
                        "its stored value cannot hold both approximations")
            series = parse_config(config)
            approximation = decompose(first.weight, series, first.axis).approximation
            stored_attr = first.constant.attributes["value"]
            stored = read_elements(stored_attr)
            flat = np.zeros(stored.size, dtype=stored.dtype)
            flat[first.stored_positions().ravel()] = approximation.ravel().astype(stored.dtype)
            tensor_type = ir.RankedTensorType(first.constant.results[0].type)
            first.constant.attributes["value"] = make_elements(flat.reshape(stored.shape), f"tasd_approx_{index}",
                                                               tensor_type)
