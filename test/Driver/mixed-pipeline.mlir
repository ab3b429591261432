// A Python pass and upstream passes in one pipeline, in order, with IR
// printing after each step.
// RUN: tasdc-opt %s -p 'canonicalize,tasd-decompose-weights{config=2:4+2:4},cse' | FileCheck %s
// RUN: tasdc-opt %s -p 'tasd-decompose-weights{config=2:4},func.func(canonicalize)' --mlir-print-ir-after-all 2>&1 >/dev/null | FileCheck %s --check-prefix=DUMP
// RUN: tasdc-opt --list-passes | FileCheck %s --check-prefix=LIST

// canonicalize folds the add of zero away before the weight is decomposed.
// CHECK-LABEL: func.func @f
// CHECK-NOT: arith.addf
// CHECK: "tasd.series"({{.*}}) {config = "2:4+2:4"
// CHECK-SAME: lossless = true

// DUMP: // -----// IR Dump After tasd-decompose-weights{config=2:4 min-size=0} //----- //
// DUMP: "tasd.series"
// DUMP: // -----// IR Dump After func.func(canonicalize) //----- //

// LIST: tasd-decompose-weights: Rewrite contractions with constant weights as TASD series of N:M terms.
// LIST: config=2:4
// LIST: tasd-sparsity-analysis:

func.func @f(%x: tensor<2x8xf32>) -> tensor<2x2xf32> {
  %w = arith.constant dense<[[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 4.0], [5.0, 6.0], [0.0, 0.0], [7.0, 0.0], [0.0, 8.0]]> : tensor<8x2xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x2xf32>) -> tensor<2x2xf32>
  %y = linalg.matmul ins(%x, %w : tensor<2x8xf32>, tensor<8x2xf32>) outs(%init : tensor<2x2xf32>) -> tensor<2x2xf32>
  %z = arith.addf %y, %init : tensor<2x2xf32>
  return %z : tensor<2x2xf32>
}
