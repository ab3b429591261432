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
  // expected-remark @+1 {{matmul_0 (linalg.matmul) left dense: only f32 contractions are decomposed}}
  %y = linalg.matmul ins(%x, %w : tensor<4x4xf64>, tensor<4x2xf64>) outs(%init : tensor<4x2xf64>) -> tensor<4x2xf64>
  return %y : tensor<4x2xf64>
}
