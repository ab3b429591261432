// Nothing qualifies: the module is unchanged and every skip is a remark.
// RUN: tasdc-opt %s -p 'tasd-decompose-weights{config=2:4 min-size=100}' --split-input-file --verify-diagnostics | FileCheck %s

// CHECK-LABEL: func.func @activations
// CHECK: linalg.matmul ins(%arg0, %arg1
// CHECK-NOT: tasd.
func.func @activations(%q: tensor<4x8xf32>, %k: tensor<8x4xf32>) -> tensor<4x4xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x4xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<4x4xf32>) -> tensor<4x4xf32>
  // expected-remark @+1 {{matmul_0 (linalg.matmul) left dense: both operands are run-time values (activation x activation)}}
  %y = linalg.matmul ins(%q, %k : tensor<4x8xf32>, tensor<8x4xf32>) outs(%init : tensor<4x4xf32>) -> tensor<4x4xf32>
  return %y : tensor<4x4xf32>
}

// -----

// CHECK-LABEL: func.func @small_weight
// CHECK: linalg.matmul
// CHECK-NOT: tasd.
func.func @small_weight(%x: tensor<4x4xf32>) -> tensor<4x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]> : tensor<4x2xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<4x2xf32>) -> tensor<4x2xf32>
  // expected-remark @+1 {{matmul_0 left dense: weight has 8 elements < min-size 100}}
  %y = linalg.matmul ins(%x, %w : tensor<4x4xf32>, tensor<4x2xf32>) outs(%init : tensor<4x2xf32>) -> tensor<4x2xf32>
  return %y : tensor<4x2xf32>
}

// -----

// CHECK-LABEL: func.func @f64_weight
// CHECK: linalg.matmul
func.func @f64_weight(%x: tensor<4x4xf64>) -> tensor<4x2xf64> {
  %w = arith.constant dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]> : tensor<4x2xf64>
  %zero = arith.constant 0.0 : f64
  %e = tensor.empty() : tensor<4x2xf64>
  %init = linalg.fill ins(%zero : f64) outs(%e : tensor<4x2xf64>) -> tensor<4x2xf64>
  // expected-remark @+1 {{matmul_0 (linalg.matmul) left dense: only contractions computed in f32 are decomposed (f16/bf16 weights widened to f32 by arith.extf are)}}
  %y = linalg.matmul ins(%x, %w : tensor<4x4xf64>, tensor<4x2xf64>) outs(%init : tensor<4x2xf64>) -> tensor<4x2xf64>
  return %y : tensor<4x2xf64>
}

// -----

// A depthwise convolution: the reason says what TASD would need.
func.func @depthwise(%x: tensor<1x4x6x6xf32>) -> tensor<1x4x4x4xf32> {
  %w = arith.constant dense<1.0> : tensor<4x3x3xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x4x4x4xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
  // expected-remark @+1 {{depthwise_conv_2d_nchw_chw_0 (linalg.depthwise_conv_2d_nchw_chw) left dense: 'linalg.depthwise_conv_2d_nchw_chw' is not decomposed: a depthwise convolution reduces over one channel's KH*KW window only (no C axis); TASD would need a depthwise tasd.conv2d term with N:M blocks along KH*KW, which the dialect and the CPU kernels do not have}}
  %y = linalg.depthwise_conv_2d_nchw_chw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %w : tensor<1x4x6x6xf32>, tensor<4x3x3xf32>) outs(%init : tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
  return %y : tensor<1x4x4x4xf32>
}
