// Series whose compressed weights are run-time values cannot be lowered to
// runtime calls (the kernels pack their weights at compile time) nor expanded
// (the reference path scatters them at compile time): exit 2, one line.
// RUN: %expect-exit 2 tasdc-opt %s -p tasd-lower-to-runtime-calls | FileCheck %s --check-prefix=CALLS
// RUN: %expect-exit 2 tasdc-opt %s -p tasd-expand-to-linalg | FileCheck %s --check-prefix=EXPAND

// CALLS: tasdc-opt: error: tasd_kernel_0: tasd.sparse_weight operands must be constants to lower to runtime calls
// EXPAND: tasdc-opt: error: 'tasd.sparse_weight' at line 11:8: values and indices must be constants to evaluate the series at compile time

func.func @runtime_weights(%x: tensor<3x8xf32>, %v: tensor<4x5xf32>, %i: tensor<4x5xi8>) -> tensor<3x5xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  %y1 = "tasd.matmul"(%x, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  %y = "tasd.series"(%y1) {config = "2:4"} : (tensor<3x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}
