"""Run a command; require its exit status and a one-line, traceback-free stderr.

Usage (lit): ``%expect-exit 2 tasdc-opt bad.mlir`` — prints the command's
stderr on stdout so FileCheck can pin the message.
"""

import subprocess
import sys

expected = int(sys.argv[1])
proc = subprocess.run(sys.argv[2:], capture_output=True, text=True)
sys.stdout.write(proc.stderr)
lines = proc.stderr.strip().splitlines()
if proc.returncode != expected:
    sys.exit(f"expected exit status {expected}, got {proc.returncode}")
if expected == 2 and (len(lines) != 1 or "Traceback" in proc.stderr):
    sys.exit(f"expected exactly one line on stderr, got {len(lines)}")
