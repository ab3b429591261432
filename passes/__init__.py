"""The registry of tasdc's Python passes.

:func:`get_all_passes` maps each pass name to a function that imports its
class, so listing passes stays cheap and every pass lives in its own file.
"""

from __future__ import annotations

from importlib import import_module
from typing import Callable

from tasdc.passes.base import ModulePass

# name -> module (in this package) that defines a ModulePass with that name.
_PASS_MODULES: dict[str, str] = {
    "tasd-decompose-activations": "decompose_activations",
    "tasd-decompose-weights": "decompose_weights",
    "tasd-plan-accel": "plan_accel",
    "tasd-sparsity-analysis": "sparsity_analysis",
    "tasd-lower-to-runtime-calls": "lower_tasd_to_calls",
    "tasd-lower-activations-to-calls": "lower_activations_to_calls",
    "tasd-cpu-to-llvm": "lower_cpu_to_llvm",
    "tasd-cpu-vectorize-contractions": "vectorize_contractions",
    "tasd-cpu-dense-to-library-calls": "dense_to_calls",
    "tasd-cpu-expand-erf": "expand_erf",
    "tasd-cpu-expand-exp": "expand_exp",
    "tasd-cpu-reassociate-reductions": "reassociate_reductions",
    "tasd-cpu-mark-noalias": "mark_noalias",
    "tasd-cpu-keep-inner-loops": "keep_inner_loops",
    "tasd-cpu-demote-f64": "demote_f64",
    "tasd-cpu-outline-loops": "outline_loops",
    "tasd-cpu-dedup-functions": "dedup_functions",
    "tasd-cpu-inline-entry": "inline_entry",
    "tasd-cpu-interchange-transposes": "interchange_transposes",
    "tasd-cpu-generalize-transposes": "generalize_transposes",
    "tasd-cpu-bind-constants": "bind_constants",
    "tasd-cpu-fold-batch-broadcasts": "fold_batch_broadcasts",
    "tasd-cpu-fold-batch-norm": "fold_batch_norm",
    "tasd-cpu-fuse-kernel-epilogues": "fuse_kernel_epilogues",
    "tasd-cpu-tap-major-filters": "tap_major_filters",
    "tasd-cpu-tile-batch": "tile_batch",
    "tasd-expand-to-linalg": "expand_to_linalg",
    "tasd-conv1d-as-conv2d": "conv1d_as_conv2d",
    "tasd-fold-weight-gathers": "fold_weight_gathers",
    "tasd-split-grouped-convs": "split_grouped_convs",
    "tasd-approximate-weights": "approximate_weights",
    "tasd-select": "select_series",
}


def _loader(module_name: str, pass_name: str) -> Callable[[], type[ModulePass]]:
    def load() -> type[ModulePass]:
        module = import_module(f"tasdc.passes.{module_name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, ModulePass) and value.name == pass_name:
                return value
        raise LookupError(f"module tasdc.passes.{module_name} defines no pass '{pass_name}'")

    return load


def get_all_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    """Pass name -> lazy loader of the pass class."""
    return {name: _loader(module, name) for name, module in sorted(_PASS_MODULES.items())}


__all__ = ["ModulePass", "get_all_passes"]
