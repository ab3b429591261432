// RUN: tasdc-opt %s --split-input-file -p 'tasd-decompose-activations{config=2:4}' | FileCheck %s
// RUN: tasdc-opt %s --split-input-file -p 'tasd-decompose-activations{config=1:4 both-operands=true}' | FileCheck %s --check-prefix=BOTH
// RUN: tasdc-opt %s --split-input-file -p 'tasd-decompose-weights{config=2:4},tasd-decompose-activations{config=2:8}' | FileCheck %s --check-prefix=AFTERW

// nn.Linear form x · Wᵀ: the activation x (lhs) is decomposed along its features (axis 1).
// CHECK-LABEL: func.func @linear
// CHECK: %[[A:.*]] = "tasd.decompose_activation"(%arg0) {axis = 1 : i64, config = "2:4"} : (tensor<2x8xf32>) -> tensor<2x8xf32>
// CHECK: linalg.matmul {{.*}}ins(%[[A]], %{{.*}} : tensor<2x8xf32>, tensor<8x4xf32>)
// AFTERW-LABEL: func.func @linear
// AFTERW: %[[A:.*]] = "tasd.decompose_activation"(%arg0) {axis = 1 : i64, config = "2:8"}
// AFTERW: "tasd.matmul"(%[[A]], %{{.*}}) {sparse_operand = 1 : i64}
// AFTERW: "tasd.series"
func.func @linear(%x: tensor<2x8xf32>) -> tensor<2x4xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], [9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
                             [8.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [7.0, 8.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0]]> : tensor<4x8xf32>
  %e0 = tensor.empty() : tensor<8x4xf32>
  %wt = linalg.transpose ins(%w : tensor<4x8xf32>) outs(%e0 : tensor<8x4xf32>) permutation = [1, 0]
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x4xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x4xf32>) -> tensor<2x4xf32>
  %y = linalg.matmul ins(%x, %wt : tensor<2x8xf32>, tensor<8x4xf32>) outs(%init : tensor<2x4xf32>) -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}

// -----

// W · x: the activation is the rhs, reduced along axis 0.
// CHECK-LABEL: func.func @weight_lhs
// CHECK: "tasd.decompose_activation"(%arg0) {axis = 0 : i64, config = "2:4"} : (tensor<4x3xf32>) -> tensor<4x3xf32>
func.func @weight_lhs(%x: tensor<4x3xf32>) -> tensor<2x3xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]> : tensor<2x4xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x3xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x3xf32>) -> tensor<2x3xf32>
  %y = linalg.matmul ins(%w, %x : tensor<2x4xf32>, tensor<4x3xf32>) outs(%init : tensor<2x3xf32>) -> tensor<2x3xf32>
  return %y : tensor<2x3xf32>
}

// -----

// A convolution's NCHW input is decomposed along its channels.
// CHECK-LABEL: func.func @conv
// CHECK: %[[A:.*]] = "tasd.decompose_activation"(%arg0) {axis = 1 : i64, config = "2:4"} : (tensor<1x4x3x3xf32>) -> tensor<1x4x3x3xf32>
// CHECK: linalg.conv_2d_nchw_fchw {{.*}}ins(%[[A]],
func.func @conv(%x: tensor<1x4x3x3xf32>) -> tensor<1x2x2x2xf32> {
  %w = arith.constant dense<[[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]], [[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]],
                             [[[2.0, 1.0], [4.0, 3.0]], [[6.0, 5.0], [8.0, 7.0]], [[2.0, 1.0], [4.0, 3.0]], [[6.0, 5.0], [8.0, 7.0]]]]> : tensor<2x4x2x2xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x2x2x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>}
         ins(%x, %w : tensor<1x4x3x3xf32>, tensor<2x4x2x2xf32>) outs(%init : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  return %y : tensor<1x2x2x2xf32>
}

// -----

// Activation x activation (QKᵀ): left alone unless both-operands is set; then both operands are decomposed.
// CHECK-LABEL: func.func @qk
// CHECK-NOT: tasd.decompose_activation
// BOTH-LABEL: func.func @qk
// BOTH: %[[Q:.*]] = "tasd.decompose_activation"(%arg0) {axis = 1 : i64, config = "1:4"}
// BOTH: %[[K:.*]] = "tasd.decompose_activation"(%arg1) {axis = 0 : i64, config = "1:4"}
// BOTH: linalg.matmul {{.*}}ins(%[[Q]], %[[K]]
func.func @qk(%q: tensor<4x8xf32>, %k: tensor<8x4xf32>) -> tensor<4x4xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x4xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<4x4xf32>) -> tensor<4x4xf32>
  %y = linalg.matmul ins(%q, %k : tensor<4x8xf32>, tensor<8x4xf32>) outs(%init : tensor<4x4xf32>) -> tensor<4x4xf32>
  return %y : tensor<4x4xf32>
}

// -----

// A selection pass's per-layer choice wins: "dense" leaves the layer alone, "1:8" overrides config.
// CHECK-LABEL: func.func @per_layer
// CHECK: "tasd.decompose_activation"(%arg0) {axis = 1 : i64, config = "1:8"}
// CHECK-NOT: tasd.decompose_activation
// CHECK: return
func.func @per_layer(%x: tensor<2x8xf32>, %x2: tensor<2x8xf32>) -> tensor<2x4xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0],
                             [8.0, 9.0, 1.0, 2.0], [3.0, 4.0, 5.0, 6.0], [7.0, 8.0, 9.0, 1.0], [2.0, 3.0, 4.0, 5.0]]> : tensor<8x4xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x4xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x4xf32>) -> tensor<2x4xf32>
  %y = linalg.matmul {tasd.act_config = "1:8"} ins(%x, %w : tensor<2x8xf32>, tensor<8x4xf32>) outs(%init : tensor<2x4xf32>) -> tensor<2x4xf32>
  %y2 = linalg.matmul {tasd.act_config = "dense"} ins(%x2, %w : tensor<2x8xf32>, tensor<8x4xf32>) outs(%y : tensor<2x4xf32>) -> tensor<2x4xf32>
  return %y2 : tensor<2x4xf32>
}
