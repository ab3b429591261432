"""lit configuration: tasdc-opt and filecheck from the project's environment."""

import os
import sys

import lit.formats

config.name = "tasdc"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
config.excludes = ["python", "Inputs", "lit.cfg.py", "Output", "expect_exit.py"]

# Tools come from the environment lit runs in (the project's .venv).
bin_dir = os.path.dirname(sys.executable)
config.environment["PATH"] = os.pathsep.join([bin_dir, config.environment.get("PATH", os.environ.get("PATH", ""))])
config.environment["TASDC_NO_PROGRESS"] = "1"
# Tests that run code use a compile cache of their own, never the user's.
config.environment["TASDC_CACHE_DIR"] = os.path.join(config.test_exec_root or os.path.dirname(__file__), "Output", "tasdc-cache")
config.substitutions.append(("FileCheck", os.path.join(bin_dir, "filecheck")))
config.substitutions.append(("tasdc-opt", os.path.join(bin_dir, "tasdc-opt")))
config.substitutions.append(("%python", sys.executable))
config.substitutions.append(("%expect-exit", f"{sys.executable} {os.path.join(os.path.dirname(__file__), 'expect_exit.py')}"))
