// A constant read by two contractions that ask for different series cannot
// hold both approximations: exit 2, one line naming both layers.
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-approximate-weights' 2>&1 | FileCheck %s

// CHECK: tasdc-opt: error: matmul_0 and matmul_1 read one weight constant but ask for 1:4 and 2:4: its stored value cannot hold both approximations
func.func @shared(%x: tensor<3x4xf32>) -> tensor<3x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]> : tensor<4x2xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<3x2xf32>) -> tensor<3x2xf32>
  %a = linalg.matmul {tasd.config = "1:4"} ins(%x, %w : tensor<3x4xf32>, tensor<4x2xf32>) outs(%init : tensor<3x2xf32>) -> tensor<3x2xf32>
  %b = linalg.matmul {tasd.config = "2:4"} ins(%x, %w : tensor<3x4xf32>, tensor<4x2xf32>) outs(%init : tensor<3x2xf32>) -> tensor<3x2xf32>
  %y = arith.addf %a, %b : tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}
