// tasd-plan-accel on TASD-A in the IR: the decomposed activation is the structured operand A.
// RUN: tasdc-opt %s -p 'tasd-decompose-activations{config=2:8},tasd-plan-accel{target=ttc-m8}' | FileCheck %s
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-decompose-activations{config=2:4},tasd-plan-accel{target=vegeta}' | FileCheck %s --check-prefix=NOUNITS
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-decompose-activations{config=2:4},tasd-plan-accel{target=stc mode=map}' | FileCheck %s --check-prefix=NOUNITS-MAP
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-decompose-activations{config=2:8},tasd-decompose-weights{config=2:8},tasd-plan-accel{target=ttc-m8}' | FileCheck %s --check-prefix=BOTH
// RUN: tasdc-opt %s -p 'tasd-decompose-activations{config=2:8},tasd-plan-accel{target=ttc-m8 dense=true}' | FileCheck %s --check-prefix=DENSE

// x[2, 8] · B[8, 4]: with the activation as A the GEMM is [1, M=2, K=8, N=4]
// (the weight-as-A GEMM would be [1, 4, 8, 2]); 2:8 runs natively on ttc-m8.
// CHECK-LABEL: func.func @linear
// CHECK: linalg.matmul
// CHECK-SAME: tasd.accel = {
// CHECK-SAME: executed = "2:8"
// CHECK-SAME: gemm = array<i64: 1, 2, 8, 4>
// CHECK-SAME: operand = "activation"
// CHECK-SAME: series = "2:8", target = "ttc-m8", tasd_a = true
// dense=true (the simulator's baseline) maps the layer as the dense model does, weight as A:
// DENSE: tasd.accel = {{{.*}}gemm = array<i64: 1, 4, 8, 2>{{.*}}operand = "weight"{{.*}}series = "dense", target = "ttc-m8", tasd_a = false

// NOUNITS: tasdc-opt: error: layer 'matmul_0': target 'vegeta' has no TASD extraction units: cannot decompose activations at run time (TASD-A 2:4); use a target with [extraction] such as ttc-m8, or compile without --act-config
// NOUNITS-MAP: tasdc-opt: error: layer 'matmul_0': target 'stc' has no TASD extraction units
// BOTH: tasdc-opt: error: layer 'matmul_0': target 'ttc-m8' has one structured operand per contraction: cannot run TASD-W 2:8 and TASD-A 2:8 together (decompose one side only)
func.func @linear(%x: tensor<2x8xf32>) -> tensor<2x4xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0],
                             [8.0, 9.0, 1.0, 2.0], [3.0, 4.0, 5.0, 6.0], [7.0, 8.0, 9.0, 1.0], [2.0, 3.0, 4.0, 5.0]]> : tensor<8x4xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x4xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x4xf32>) -> tensor<2x4xf32>
  %y = linalg.matmul ins(%x, %w : tensor<2x8xf32>, tensor<8x4xf32>) outs(%init : tensor<2x4xf32>) -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}
