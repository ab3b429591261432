// tasd.decompose_activation prints and parses back to identical text, alone
// and combined with a weight series on one contraction.
// RUN: tasdc-opt %s --split-input-file > %t.1.mlir
// RUN: tasdc-opt %t.1.mlir --split-input-file > %t.2.mlir
// RUN: diff %t.1.mlir %t.2.mlir
// RUN: FileCheck %s --input-file=%t.2.mlir

// CHECK-LABEL: func.func @activation_matmul
// CHECK: %[[A:.*]] = "tasd.decompose_activation"(%arg0) {axis = 1 : i64, config = "2:4+1:8"} : (tensor<3x8xf32>) -> tensor<3x8xf32>
// CHECK: linalg.matmul ins(%[[A]], %arg1 : tensor<3x8xf32>, tensor<8x5xf32>)
func.func @activation_matmul(%x: tensor<3x8xf32>, %w: tensor<8x5xf32>, %init: tensor<3x5xf32>) -> tensor<3x5xf32> {
  %a = "tasd.decompose_activation"(%x) {config = "2:4+1:8", axis = 1 : i64} : (tensor<3x8xf32>) -> tensor<3x8xf32>
  %y = linalg.matmul ins(%a, %w : tensor<3x8xf32>, tensor<8x5xf32>) outs(%init : tensor<3x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}

// -----

// CHECK-LABEL: func.func @activation_conv_input
// CHECK: "tasd.decompose_activation"(%arg0) {axis = 1 : i64, config = "1:4"} : (tensor<1x8x5x5xf32>) -> tensor<1x8x5x5xf32>
func.func @activation_conv_input(%x: tensor<1x8x5x5xf32>) -> tensor<1x8x5x5xf32> {
  %a = "tasd.decompose_activation"(%x) {config = "1:4", axis = 1 : i64} : (tensor<1x8x5x5xf32>) -> tensor<1x8x5x5xf32>
  return %a : tensor<1x8x5x5xf32>
}

// -----

// TASD-W and TASD-A on one contraction: the weight series' dense operand is decomposed at run time.
// CHECK-LABEL: func.func @combined
// CHECK: %[[A:.*]] = "tasd.decompose_activation"(%arg0) {axis = 1 : i64, config = "2:4"}
// CHECK: "tasd.matmul"(%[[A]], %{{.*}}) {sparse_operand = 1 : i64}
// CHECK: "tasd.series"
func.func @combined(%x: tensor<3x8xf32>, %v: tensor<4x5xf32>, %i: tensor<4x5xi8>) -> tensor<3x5xf32> {
  %a = "tasd.decompose_activation"(%x) {config = "2:4", axis = 1 : i64} : (tensor<3x8xf32>) -> tensor<3x8xf32>
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  %t = "tasd.matmul"(%a, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  %y = "tasd.series"(%t) {config = "2:4"} : (tensor<3x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}
