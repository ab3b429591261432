"""Parameters and buffers that an op takes inside a list compile and run.

torch-mlir's frozen import replaces each state placeholder by its tensor; where an
op takes the state inside a list (``x[:, idx]`` is ``aten.index.Tensor(x, [None,
idx])``, ``torch.cat([param, x])``) the list then held a tensor next to graph values
and the import failed with "Heterogeneous lists are not supported: expected
vtensor, got <class 'torch.Tensor'>" — every Swin model did, through its
relative-position index. The importer now gives such state a copy of its own
(``state_in_lists_copied``).

Tolerance: float32 outputs computed by torch and by the CPU runtime in different
summation orders; the lossless series ``2:4+2:4`` holds the same weights.
Observed ≤ 6e-7 relative to the largest output; ``atol = rtol = 1e-5``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tasdc.compiler import CompileOptions, compile_model
from tasdc.importer import state_in_lists_copied

TOL = 1e-5


class StateInLists(nn.Module):
    """A non-persistent index buffer inside ``index.Tensor``'s list, a parameter and a
    constant-free ``stack`` partner inside ``cat``'s and ``stack``'s lists."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("order", torch.tensor([3, 1, 0, 2]), persistent=False)
        self.register_buffer("offset", torch.randn(2, 4))
        self.prefix = nn.Parameter(torch.randn(2, 4))
        self.proj = nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = torch.cat([self.prefix, x[:, self.order]])
        both = torch.stack([rows[:2], self.offset]).sum(0)
        return self.proj(torch.cat([rows, both]))


@pytest.mark.parametrize("config", ["dense", "2:4+2:4"])
def test_state_inside_lists_matches_torch(config: str) -> None:
    torch.manual_seed(0)
    model = StateInLists().eval()
    x = torch.randn(6, 4)
    with torch.no_grad():
        want = model(x).numpy()
    compiled = compile_model(model, (x,), CompileOptions(config=config))
    assert [row.op for row in compiled.report.layers] == ["tasd.series" if config != "dense" else "linalg.matmul"]
    np.testing.assert_allclose(compiled(x.numpy()), want, atol=TOL, rtol=TOL)


def test_only_state_in_lists_is_copied() -> None:
    """The graph rewrite: one clone per state tensor used in a list, read by every list
    that held it; the user input and state used outside lists keep their uses."""
    program = torch.export.export(StateInLists().eval(), (torch.randn(6, 4),))
    graph = program.graph
    state_in_lists_copied(program)
    clones = [n for n in graph.nodes if n.target is torch.ops.aten.clone.default]
    assert sorted(c.args[0].target for c in clones) == sorted(["b_order", "b_offset", "p_prefix"])
    for node in graph.nodes:
        for arg in node.args:
            if isinstance(arg, (list, tuple)):
                assert not any(getattr(a, "op", None) == "placeholder" and a.name != "x" for a in arg), node
    weight = next(n for n in graph.nodes if n.op == "placeholder" and n.name == "p_proj_weight")
    assert all(user.target is not torch.ops.aten.clone.default for user in weight.users)


def test_swin_compiles_and_matches_torch() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[2, 4],
                                     window_size=4)
    torch.manual_seed(0)
    model = transformers.SwinModel(config).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = model(x).last_hidden_state.numpy()
    compiled = compile_model(model, (x,), CompileOptions(config="2:4+2:4"))
    weights = sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in model.modules())
    assert sum(row.op == "tasd.series" for row in compiled.report.layers) == weights
    got = compiled(x.numpy())
    got = got[0] if isinstance(got, (tuple, list)) else got
    np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)
