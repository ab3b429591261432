// User errors exit with status 2 and print exactly one line.
// RUN: %expect-exit 2 tasdc-opt %s -p 'no-such-pass' | FileCheck %s --check-prefix=UNKNOWN
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-decompose-weights{bogus=1}' | FileCheck %s --check-prefix=OPTION
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-decompose-weights{config=3:2}' | FileCheck %s --check-prefix=CONFIG
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-decompose-weights{config=0:4}' | FileCheck %s --check-prefix=ZERO
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-decompose-weights{min-size=abc}' | FileCheck %s --check-prefix=VALUE
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-decompose-weights{config=2:4' | FileCheck %s --check-prefix=BRACE
// RUN: %expect-exit 2 tasdc-opt %S/Inputs/malformed.mlir | FileCheck %s --check-prefix=PARSE
// RUN: %expect-exit 2 tasdc-opt %S/Inputs/does-not-exist.mlir | FileCheck %s --check-prefix=MISSING
// RUN: %expect-exit 2 tasdc-opt %S/Inputs | FileCheck %s --check-prefix=DIR

// UNKNOWN: tasdc-opt: error: unknown pass or bad pipeline 'no-such-pass': {{.*}}'no-such-pass' does not refer to a registered pass or pass pipeline
// OPTION: tasdc-opt: error: pass 'tasd-decompose-weights' has no option 'bogus' (options: config, min-size)
// CONFIG: tasdc-opt: error: pass 'tasd-decompose-weights': invalid N:M pattern '3:2'
// ZERO: tasdc-opt: error: pass 'tasd-decompose-weights': invalid N:M pattern '0:4'
// VALUE: tasdc-opt: error: option 'min-size' of pass 'tasd-decompose-weights' expects int, got 'abc'
// PARSE: tasdc-opt: error: cannot parse {{.*}}malformed.mlir: {{.*}}malformed.mlir:3:
// BRACE: tasdc-opt: error: unbalanced brackets in pass pipeline
// DIR: tasdc-opt: error: {{.*}}Inputs: is a directory, expected an MLIR file
// MISSING: tasdc-opt: error: {{.*}}does-not-exist.mlir: no such file

func.func @f() {
  return
}
