// RUN: tasdc-opt %s -p 'tasd-sparsity-analysis{json=%t.json}' --verify-diagnostics | FileCheck %s
// RUN: FileCheck %s --check-prefix=JSON --input-file=%t.json
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-sparsity-analysis{patterns=2:4+1:4}' | FileCheck %s --check-prefix=BAD

// Column 0 holds 1 non-zero in each 4-block, column 1 holds 2: the cheapest
// lossless series from the default patterns is 2:4; density 6/16.
// CHECK-LABEL: func.func @f
// CHECK: linalg.matmul {tasd.layer = "matmul_0", tasd.stats = {cheapest_lossless = "2:4", density = 3.750000e-01 : f64, gemm = array<i64: 1, 2, 8, 3>, hist_m4 = array<i64: 0, 2, 2, 0, 0>, hist_m8 = array<i64: 0, 0, 1, 0, 1, 0, 0, 0, 0>, kind = "matmul"}
// CHECK: linalg.matmul {{.*}}tasd.layer = "matmul_1", tasd.stats = {skipped = "both operands are run-time values (activation x activation)"}

// JSON: "layer": "matmul_0"
// JSON: "cheapest_lossless": "2:4"
// JSON: "layer": "matmul_1"
// JSON: "skipped": "both operands are run-time values (activation x activation)"

// BAD: tasdc-opt: error: pass 'tasd-sparsity-analysis': patterns must be single N:M terms, got '2:4+1:4'

func.func @f(%x: tensor<3x8xf32>, %y: tensor<2x3xf32>) -> tensor<2x2xf32> {
  %w = arith.constant dense<[[1.0, 0.0], [0.0, 2.0], [0.0, 3.0], [0.0, 0.0], [0.0, 4.0], [0.0, 5.0], [0.0, 0.0], [6.0, 0.0]]> : tensor<8x2xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<3x2xf32>) -> tensor<3x2xf32>
  %a = linalg.matmul ins(%x, %w : tensor<3x8xf32>, tensor<8x2xf32>) outs(%init : tensor<3x2xf32>) -> tensor<3x2xf32>
  %e2 = tensor.empty() : tensor<2x2xf32>
  %init2 = linalg.fill ins(%zero : f32) outs(%e2 : tensor<2x2xf32>) -> tensor<2x2xf32>
  // expected-remark @+1 {{matmul_1 (linalg.matmul) is not a TASD candidate: both operands are run-time values (activation x activation)}}
  %b = linalg.matmul ins(%y, %a : tensor<2x3xf32>, tensor<3x2xf32>) outs(%init2 : tensor<2x2xf32>) -> tensor<2x2xf32>
  return %b : tensor<2x2xf32>
}
