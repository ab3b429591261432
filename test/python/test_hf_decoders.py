"""Hugging Face decoders with their default config (a KV cache, SDPA attention) compile and run.

``LlamaModel`` / ``GPT2Model`` in eval mode return a ``DynamicCache`` besides
the hidden states (``config.use_cache`` is true by default), which
``torch.export`` cannot return: ``compile_model(model, inputs)`` failed with
"torch.export failed: Found <class 'transformers.cache_utils.DynamicCache'>
in output". The importer now exports them with ``use_cache = False`` and
restores the flag; the hidden states do not depend on it. GPT-2's SDPA
attention also failed in torch's own decomposition of the exported program
("Cannot view a tensor with shape [2, 12, 32] and strides (32, 64, 1)"): the
importer retries with the model's eager attention and sets SDPA back.

Tolerance: float32 hidden states of two-layer models (widths 32–64) computed by
torch and by the CPU runtime in different summation orders; the lossless
series ``2:4+2:4`` holds the same weights. Observed ≤ 5e-7; ``atol = rtol = 1e-5``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from tasdc.compiler import CompileOptions, compile_model  # noqa: E402

TOL = 1e-5


def _llama() -> torch.nn.Module:
    config = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      intermediate_size=64, vocab_size=100, max_position_embeddings=64)
    return transformers.LlamaModel(config)


def _gpt2() -> torch.nn.Module:
    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, n_positions=64,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2Model(config)


@pytest.mark.parametrize("build", [_llama, _gpt2], ids=["llama", "gpt2"])
def test_decoder_with_kv_cache_config(build) -> None:
    torch.manual_seed(0)
    model = build().eval()
    assert model.config.use_cache is True  # the defaults this test is about
    assert model.config._attn_implementation == "sdpa"
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(ids).last_hidden_state.numpy()
    compiled = compile_model(model, (ids,), CompileOptions(config="2:4+2:4"))
    assert model.config.use_cache is True  # both restored after the export
    assert model.config._attn_implementation == "sdpa"
    weights = sum(isinstance(m, (torch.nn.Linear, transformers.pytorch_utils.Conv1D)) for m in model.modules())
    assert sum(row.op == "tasd.series" for row in compiled.report.layers) == weights  # every projection decomposed
    got = compiled(ids.numpy())
    got = got[0] if isinstance(got, (tuple, list)) else got
    np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)
