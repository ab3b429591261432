"""TASDER on multi-input models: named calibration / evaluation inputs, labels, and the quality metric rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import run_cli
from tasdc.errors import TasdcError
from tasdc.tasder import TasderSession, choose_metric


class TwoInputClassifier(nn.Module):
    """Logits of a final Linear from two inputs (features and a per-feature gate)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(16, 32)
        self.b = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)) * gate)


class TwoInputEmbedder(TwoInputClassifier):
    """The same layers ending in a LayerNorm: an embedding, not class scores."""

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return nn.functional.layer_norm(super().forward(x, gate), (4,))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("two_inputs")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 16)).astype(np.float32)
    gate = (rng.random((40, 32)) > 0.3).astype(np.float32)
    paths = {}
    for name, cls in (("classifier", TwoInputClassifier), ("embedder", TwoInputEmbedder)):
        model = cls().eval()
        program = torch.export.export(model, (torch.from_numpy(x[:8]), torch.from_numpy(gate[:8])))
        torch.export.save(program, out / f"{name}.pt2")
        with torch.no_grad():
            labels = model(torch.from_numpy(x), torch.from_numpy(gate)).argmax(1).numpy()
        labels[::5] = (labels[::5] + 1) % 4  # dense accuracy 80 %, so accuracy and agreement differ
        paths[name] = out / f"{name}.pt2"
        # Keys in the opposite order of the model's arguments: matched by name, not position.
        np.savez(out / f"{name}-calib.npz", gate=gate[:24], x=x[:24], labels=labels[:24])
        np.savez(out / f"{name}-eval.npz", gate=gate[24:], x=x[24:], labels=labels[24:])
        np.savez(out / f"{name}-nolabels.npz", gate=gate[:24], x=x[:24])
    np.savez(out / "wrong-names.npz", g=gate[:24], inputs=x[:24])
    paths["dir"] = out
    paths["x"], paths["gate"], paths["labels"] = x, gate, None
    return paths


def test_two_inputs_with_labels_default_to_dense_relative_accuracy(files):
    out = files["dir"]
    session = TasderSession(files["classifier"], calib=out / "classifier-calib.npz", eval=out / "classifier-eval.npz",
                            progress=False)
    result = session.compile("vegeta", "edp", 0.99)
    assert result.quality_metric == "accuracy / dense accuracy"
    assert "labels" in result.metric_why
    assert result.meets_bound
    # Independently: the compiled and the dense model on the eval inputs, batch 8, by argument order (x, gate).
    x, gate = files["x"][24:], files["gate"][24:]
    labels = np.load(out / "classifier-eval.npz")["labels"]
    dense = session.compile_with([], "dense")
    pred = np.concatenate([result(x[i:i + 8], gate[i:i + 8]).argmax(1) for i in range(0, 16, 8)])
    dpred = np.concatenate([dense(x[i:i + 8], gate[i:i + 8]).argmax(1) for i in range(0, 16, 8)])
    acc, dense_acc = (pred == labels).mean(), (dpred == labels).mean()
    assert acc >= 0.99 * dense_acc
    measured = result.measured["eval"]
    assert measured.accuracy == pytest.approx(acc) and measured.dense_accuracy == pytest.approx(dense_acc)
    assert measured.value == pytest.approx(acc / dense_acc)
    assert "quality metric: accuracy / dense accuracy (the files have labels" in result.table()


def test_without_labels_logits_use_agreement_and_embeddings_use_cosine(files):
    out = files["dir"]
    logits = TasderSession(files["classifier"], calib=out / "classifier-nolabels.npz", progress=False)
    assert logits.compile("vegeta", "edp", 0.99).quality_metric == "top-1 agreement"
    assert "final linear layer" in logits.metric_why
    embed = TasderSession(files["embedder"], calib=out / "embedder-nolabels.npz", progress=False)
    result = embed.compile("vegeta", "edp", 0.99)
    assert result.quality_metric == "cosine similarity"
    assert "not produced by a final linear layer" in result.metric_why
    assert result.meets_bound


def test_metric_rule():
    logits = np.zeros((8, 10), np.float32)
    assert choose_metric(logits, True, True, None)[0] == "accuracy"
    assert choose_metric(logits, False, True, None)[0] == "agreement"
    assert choose_metric(logits, False, False, None)[0] == "cosine"          # a pooled embedding
    assert choose_metric(np.zeros((8, 5, 10)), False, True, None)[0] == "cosine"
    assert choose_metric(np.zeros((8, 1)), False, True, None)[0] == "relerr"
    assert choose_metric(logits, True, True, "relerr") == ("relerr", "requested")
    with pytest.raises(TasdcError, match="'accuracy' needs 'labels'"):
        choose_metric(logits, False, True, "accuracy")
    with pytest.raises(TasdcError, match="needs a 2-D output of class scores"):
        choose_metric(np.zeros((8, 5, 10)), False, True, "agreement")


def test_cli_metric_and_named_inputs(files):
    out = files["dir"]
    ok = run_cli("compile", str(files["embedder"]), "--target", "stc", "--quality", "0.98",
                 "--calib", str(out / "embedder-calib.npz"), "--metric", "relerr")
    assert ok.returncode == 0, ok.stderr
    assert "quality metric: 1 - relative error (requested)" in ok.stdout
    bad = run_cli("compile", str(files["classifier"]), "--target", "stc", "--quality", "0.99",
                  "--calib", str(out / "wrong-names.npz"))
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"tasdc: error: {out / 'wrong-names.npz'}: inputs do not match the model: expected x, gate; found g, inputs"]


class TwoOutputModel(TwoInputClassifier):
    """An embedding (LayerNorm) first and class logits second, returned by name."""

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = super().forward(x, gate)
        return {"embedding": nn.functional.layer_norm(logits, (4,)), "logits": logits}


@pytest.fixture(scope="module")
def two_outputs(files):
    torch.manual_seed(0)
    x, gate = files["x"], files["gate"]
    program = torch.export.export(TwoOutputModel().eval(), (torch.from_numpy(x[:8]), torch.from_numpy(gate[:8])))
    path = files["dir"] / "two-outputs.pt2"
    torch.export.save(program, path)
    return path


def test_metric_output_chooses_the_measured_output(files, two_outputs):
    out = files["dir"]
    first = TasderSession(two_outputs, calib=out / "classifier-nolabels.npz", progress=False)
    assert first.metric == "cosine similarity" and "on output" not in first.metric_why
    for wanted in ("logits", 1, "output1"):
        session = TasderSession(two_outputs, calib=out / "classifier-nolabels.npz", progress=False,
                                metric_output=wanted)
        assert session.metric == "top-1 agreement", wanted
        assert session.metric_why.endswith("; on output 1 'logits'")
    result = session.compile("vegeta", "edp", 0.99)
    # Independently: top-1 agreement of the compiled and dense models' logits (second output) on the calibration set.
    x, gate = files["x"][:24], files["gate"][:24]
    dense = session.compile_with([], "dense")
    agree = np.mean(np.concatenate([
        result(x[i:i + 8], gate[i:i + 8])[1].argmax(1) == dense(x[i:i + 8], gate[i:i + 8])[1].argmax(1)
        for i in range(0, 24, 8)]))
    assert result.measured["calibration"].value == pytest.approx(agree)
    assert "on output 1 'logits'" in result.table()


def test_metric_output_errors(files, two_outputs):
    out = files["dir"]
    with pytest.raises(TasdcError, match=r"metric output 'scores' is not an output of the model \(outputs: "
                                         r"0 'embedding', 1 'logits'\)"):
        TasderSession(two_outputs, calib=out / "classifier-nolabels.npz", progress=False, metric_output="scores")
    bad = run_cli("compile", str(two_outputs), "--target", "stc", "--quality", "0.99",
                  "--calib", str(out / "classifier-nolabels.npz"), "--metric-output", "2")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "tasdc: error: metric output '2' is not an output of the model (outputs: 0 'embedding', 1 'logits')"]
    alone = run_cli("compile", str(two_outputs), "--metric-output", "logits")
    assert alone.returncode == 2 and "need --quality" in alone.stderr
