// The reference path: a series becomes one dense contraction on the exact
// sum of its terms. With a lossless series on this weight the expanded
// constant equals the original weight, so canonicalize+cse can't tell them apart.
// RUN: tasdc-opt %s --split-input-file -p 'tasd-decompose-weights{config=2:4+2:4},tasd-expand-to-linalg' | FileCheck %s
// RUN: tasdc-opt %s --split-input-file -p 'tasd-decompose-weights{config=1:4},tasd-expand-to-linalg' | FileCheck %s --check-prefix=LOSSY
// The expanded contractions are ordinary linalg again (the matmul has no
// explicit indexing_maps): the analysis reads them, 1 non-zero per 4-block.
// RUN: tasdc-opt %s --split-input-file -p 'tasd-decompose-weights{config=1:4},tasd-expand-to-linalg,tasd-sparsity-analysis' | FileCheck %s --check-prefix=AGAIN

// CHECK-LABEL: func.func @matmul
// CHECK-NOT: tasd.
// CHECK: %[[W:.*]] = arith.constant dense_resource<tasd_expanded_0> : tensor<4x2xf32>
// CHECK: linalg.matmul ins(%arg0, %[[W]] : tensor<3x4xf32>, tensor<4x2xf32>)
// CHECK: tasd_expanded_0: "0x040000000000803F0000004000004040000080400000A0400000C0400000E04000000041"
// LOSSY-LABEL: func.func @matmul
// 1:4 keeps the largest of each column block: 7 and 8.
// LOSSY: tasd_expanded_0: "0x040000000000000000000000000000000000000000000000000000000000E04000000041"
// AGAIN-LABEL: func.func @matmul
// AGAIN: linalg.matmul {tasd.layer = "matmul_0", tasd.stats = {cheapest_lossless = "1:8", density = 2.500000e-01 : f64, gemm = array<i64: 1, 2, 4, 3>, hist_m4 = array<i64: 0, 2, 0, 0, 0>
func.func @matmul(%x: tensor<3x4xf32>) -> tensor<3x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]> : tensor<4x2xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<3x2xf32>) -> tensor<3x2xf32>
  %y = linalg.matmul ins(%x, %w : tensor<3x4xf32>, tensor<4x2xf32>) outs(%init : tensor<3x2xf32>) -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}

// -----

// CHECK-LABEL: func.func @conv
// CHECK: %[[F:.*]] = arith.constant dense_resource<tasd_expanded_0> : tensor<2x1x2x2xf32>
// CHECK: linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>} ins(%arg0, %[[F]] : tensor<1x1x3x3xf32>, tensor<2x1x2x2xf32>)
func.func @conv(%x: tensor<1x1x3x3xf32>) -> tensor<1x2x2x2xf32> {
  %f = arith.constant dense<[[[[1.0, 2.0], [3.0, 4.0]]], [[[5.0, 6.0], [7.0, 8.0]]]]> : tensor<2x1x2x2xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x2x2x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %f : tensor<1x1x3x3xf32>, tensor<2x1x2x2xf32>) outs(%init : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  return %y : tensor<1x2x2x2xf32>
}
