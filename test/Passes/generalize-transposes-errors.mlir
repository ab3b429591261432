// tasd-cpu-generalize-transposes takes no options: one given is a user error (exit 2, one
// line naming the pass and the option), never a crash; malformed input likewise.
// RUN: %expect-exit 2 tasdc-opt %s -p "tasd-cpu-generalize-transposes{fuse=true}" 2>&1 | FileCheck %s
// RUN: %expect-exit 2 tasdc-opt %S/Inputs/generalize-transposes-no-type.mlir -p tasd-cpu-generalize-transposes 2>&1 | FileCheck %s --check-prefix=PARSE
// CHECK: tasdc-opt: error: pass 'tasd-cpu-generalize-transposes' has no option 'fuse' (options: none)
// CHECK-NOT: Traceback
// PARSE: tasdc-opt: error: cannot parse {{.*}}generalize-transposes-no-type.mlir:{{[0-9]+}}:{{[0-9]+}}: expected ':'
// PARSE-NOT: Traceback
func.func @f(%x: tensor<8x4x2xf32>) -> tensor<4x8x2xf32> {
  %e = tensor.empty() : tensor<4x8x2xf32>
  %t = linalg.transpose ins(%x : tensor<8x4x2xf32>) outs(%e : tensor<4x8x2xf32>) permutation = [1, 0, 2]
  return %t : tensor<4x8x2xf32>
}
