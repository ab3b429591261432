// RUN: tasdc-opt %s --split-input-file -p 'tasd-decompose-weights{config=2:4+1:4}' | FileCheck %s

// A constant B operand: the weight is B[K=8, N=4], compressed along axis 0.
// CHECK-LABEL: func.func @matmul
// CHECK-NOT: linalg.matmul
// CHECK: %[[V0:.*]] = arith.constant dense_resource<matmul_0_t0_2of4_values> : tensor<4x4xf32>
// CHECK: %[[I0:.*]] = arith.constant dense_resource<matmul_0_t0_2of4_indices> : tensor<4x4xi8>
// CHECK: %[[W0:.*]] = "tasd.sparse_weight"(%[[V0]], %[[I0]]) {axis = 0 : i64, m = 4 : i64, n = 2 : i64, padding = 0 : i64} : (tensor<4x4xf32>, tensor<4x4xi8>) -> tensor<8x4xf32>
// CHECK: %[[T0:.*]] = "tasd.matmul"(%arg0, %[[W0]]) {sparse_operand = 1 : i64}
// CHECK: "tasd.sparse_weight"({{.*}}) {axis = 0 : i64, m = 4 : i64, n = 1 : i64, padding = 0 : i64} : (tensor<2x4xf32>, tensor<2x4xi8>) -> tensor<8x4xf32>
// CHECK: %[[T1:.*]] = "tasd.matmul"(%arg0, %{{.*}}) {sparse_operand = 1 : i64}
// CHECK: %[[S:.*]] = "tasd.series"(%[[T0]], %[[T1]]) {config = "2:4+1:4", tasd.layer = "matmul_0", tasd.stats = {{{.*}}config = "2:4+1:4"{{.*}}lossless = false{{.*}}}}
// CHECK: return %[[S]]
func.func @matmul(%x: tensor<2x8xf32>) -> tensor<2x4xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0],
                             [8.0, 9.0, 1.0, 2.0], [3.0, 4.0, 5.0, 6.0], [7.0, 8.0, 9.0, 1.0], [2.0, 3.0, 4.0, 5.0]]> : tensor<8x4xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x4xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x4xf32>) -> tensor<2x4xf32>
  %y = linalg.matmul ins(%x, %w : tensor<2x8xf32>, tensor<8x4xf32>) outs(%init : tensor<2x4xf32>) -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}

// -----

// torch-mlir's nn.Linear form: a transposed constant W[out=3, in=6]; the
// transpose folds into the weight ([6, 3] along axis 0, padded 6 -> 8) and
// the bias-carrying init is added back.
// CHECK-LABEL: func.func @linear
// CHECK-NOT: linalg.transpose
// CHECK-NOT: linalg.matmul
// CHECK: "tasd.sparse_weight"({{.*}}) {axis = 0 : i64, m = 4 : i64, n = 2 : i64, padding = 2 : i64} : (tensor<4x3xf32>, tensor<4x3xi8>) -> tensor<6x3xf32>
// CHECK: %[[S:.*]] = "tasd.series"
// CHECK: %[[SUM:.*]] = arith.addf %[[S]], %arg1 : tensor<5x3xf32>
// CHECK: return %[[SUM]]
func.func @linear(%x: tensor<5x6xf32>, %bias: tensor<5x3xf32>) -> tensor<5x3xf32> {
  %w = arith.constant dense<[[1.0, -2.0, 3.0, 0.0, 5.0, 6.0], [0.5, 0.0, 0.0, 4.0, 0.0, 1.0], [9.0, 8.0, 7.0, 6.0, 5.0, 4.0]]> : tensor<3x6xf32>
  %e = tensor.empty() : tensor<6x3xf32>
  %wt = linalg.transpose ins(%w : tensor<3x6xf32>) outs(%e : tensor<6x3xf32>) permutation = [1, 0]
  %y = linalg.matmul ins(%x, %wt : tensor<5x6xf32>, tensor<6x3xf32>) outs(%bias : tensor<5x3xf32>) -> tensor<5x3xf32>
  return %y : tensor<5x3xf32>
}

// -----

// A constant filter F=2, C=1, 3x3: reduced over C*KH*KW = 9, padded to 12.
// CHECK-LABEL: func.func @conv2d
// CHECK-NOT: linalg.conv_2d_nchw_fchw
// CHECK: "tasd.sparse_weight"({{.*}}) {axis = 1 : i64, m = 4 : i64, n = 2 : i64, padding = 3 : i64} : (tensor<2x6xf32>, tensor<2x6xi8>) -> tensor<2x9xf32>
// CHECK: "tasd.conv2d"(%arg0, %{{.*}}) {dilations = array<i64: 1, 1>, kernel_size = array<i64: 3, 3>, sparse_operand = 1 : i64, strides = array<i64: 2, 2>} : (tensor<1x1x7x7xf32>, tensor<2x9xf32>) -> tensor<1x2x3x3xf32>
// CHECK: "tasd.series"({{.*}}) {config = "2:4+1:4", tasd.layer = "conv2d_0"
func.func @conv2d(%x: tensor<1x1x7x7xf32>) -> tensor<1x2x3x3xf32> {
  %f = arith.constant dense<[[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]], [[[9.0, 8.0, 7.0], [6.0, 5.0, 4.0], [3.0, 2.0, 1.0]]]]> : tensor<2x1x3x3xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x2x3x3xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<1x2x3x3xf32>) -> tensor<1x2x3x3xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<2> : vector<2xi64>} ins(%x, %f : tensor<1x1x7x7xf32>, tensor<2x1x3x3xf32>) outs(%init : tensor<1x2x3x3xf32>) -> tensor<1x2x3x3xf32>
  return %y : tensor<1x2x3x3xf32>
}

// -----

// A constant A operand of batch_matmul: [B=2, M=2, K=4] compressed along axis 2.
// CHECK-LABEL: func.func @batch_matmul
// CHECK: "tasd.sparse_weight"({{.*}}) {axis = 2 : i64, m = 4 : i64, n = 2 : i64, padding = 0 : i64} : (tensor<2x2x2xf32>, tensor<2x2x2xi8>) -> tensor<2x2x4xf32>
// CHECK: "tasd.batch_matmul"(%{{.*}}, %arg0) {sparse_operand = 0 : i64}
// CHECK: "tasd.series"
func.func @batch_matmul(%x: tensor<2x4x3xf32>) -> tensor<2x2x3xf32> {
  %w = arith.constant dense<[[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], [[8.0, 7.0, 6.0, 5.0], [4.0, 3.0, 2.0, 1.0]]]> : tensor<2x2x4xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x2x3xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x2x3xf32>) -> tensor<2x2x3xf32>
  %y = linalg.batch_matmul ins(%w, %x : tensor<2x2x4xf32>, tensor<2x4x3xf32>) outs(%init : tensor<2x2x3xf32>) -> tensor<2x2x3xf32>
  return %y : tensor<2x2x3xf32>
}
