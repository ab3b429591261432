// tasd-select with activation series (TASD-A) on ttc-m8: the calibration inputs hold at most one
// non-zero per 8-block, so "A 1:8" is lossless on them and the cheapest option for the dense weight.
// RUN: %python -c "import numpy as np; x = np.zeros((6, 16), np.float32); x[:, 3] = 1.5; x[:, 12] = -2.0; x[::2, 3] = 0.0; np.save('%t.npy', x)"
// budget=1e-9: only moves that add no measured error. The activation is 1-of-8 sparse on the calibration data, so "A 1:8" is lossless there; with the overlapped fill/drain model a lossy weight series on this tiny layer would otherwise outbid it.
// RUN: tasdc-opt %s -p 'tasd-select{target=ttc-m8 quality=0.99 budget=1e-9 calib=%t.npy}' | FileCheck %s
// RUN: tasdc-opt %s -p 'tasd-select{target=ttc-m8 quality=0.99 budget=1e-9 calib=%t.npy},tasd-decompose-activations{config=dense},tasd-decompose-weights' | FileCheck %s --check-prefix=APPLY
// quality=1 (budget 0, exact on every input): the same path, with "A 1:8" on it, is cut before that move.
// RUN: tasdc-opt %s -p 'tasd-select{target=ttc-m8 quality=1.0 calib=%t.npy}' | FileCheck %s --check-prefix=EXACT
// RUN: tasdc-opt %s -p 'tasd-select{target=ttc-m8 quality=0.99 calib=%t.npy activations=false}' | FileCheck %s --check-prefix=OFF
// RUN: tasdc-opt %s -p 'tasd-select{target=ttc-m8 quality=0.99}' | FileCheck %s --check-prefix=OFF
// RUN: tasdc-opt %s -p 'tasd-select{target=vegeta quality=0.99 calib=%t.npy}' | FileCheck %s --check-prefix=OFF

// CHECK: linalg.matmul
// CHECK-SAME: tasd.act_config = "1:8"
// CHECK-SAME: tasd.config = "dense"
// CHECK-SAME: chosen = "A 1:8"
// CHECK-SAME: side = "activation"
// APPLY: %[[A:.*]] = "tasd.decompose_activation"(%arg0) {axis = 1 : i64, config = "1:8"}
// APPLY: linalg.matmul {{.*}}ins(%[[A]],
// APPLY-NOT: tasd.series
// EXACT: path_exact_steps = 0
// EXACT-SAME: path_moves = {{\[\[}}"matmul_0", "A 1:8"], ["matmul_0", "4:8+2:8"]
// EXACT: linalg.matmul
// EXACT-NOT: tasd.act_config
// EXACT-SAME: series = "A 1:8"
// EXACT-SAME: chosen = "dense"
// EXACT-SAME: why = "left dense: the next greedy step would make it A 1:8, an activation series, exact on the calibration inputs at best, and the bound asks for exact on every input"
// OFF-NOT: tasd.act_config
// OFF-NOT: side = "activation"
func.func @main(%x: tensor<2x16xf32>) -> tensor<2x8xf32> {
  %w = arith.constant dense<[[0.35, 0.82, 0.33, -1.30, 0.91, 0.45, -0.54, 0.58], [0.36, 0.29, 0.03, 0.55, -0.74, -0.16, -0.48, 0.60], [0.04, -0.29, -0.78, -0.26, 0.01, -0.28, 1.29, 1.01], [-2.71, -1.89, -0.17, -0.42, 0.21, 0.22, 2.12, -1.11], [-0.38, 2.04, 0.65, 0.66, -0.51, -1.65, 0.17, 0.11], [-1.23, -0.68, -0.07, -0.94, -0.10, 0.10, 0.04, -0.51], [0.59, 0.89, 0.32, -0.82, 0.73, -0.50, 0.88, -1.07], [0.91, -0.02, -1.25, -0.31, 0.05, 0.27, -0.98, -1.11], [0.20, -0.47, 0.24, 0.76, -1.65, 0.25, 1.22, -0.30], [-0.81, 0.75, 0.25, 0.90, -0.35, -1.48, -0.11, -0.45], [0.78, 0.19, -1.63, -1.20, 0.88, 0.68, -0.64, -0.00], [0.45, 0.47, 0.88, 0.26, -0.09, -0.26, 1.06, -2.25], [-0.14, 0.03, -1.43, 0.33, -0.65, 0.86, -0.13, 0.67], [1.22, 0.38, -0.88, -1.51, 1.75, -0.11, -0.69, 0.14], [-0.19, 0.85, 0.03, 0.01, -0.71, 0.47, -1.03, 0.67], [1.52, -1.52, -2.47, 0.62, 2.55, -1.00, -1.25, 0.59]]> : tensor<16x8xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x8xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x8xf32>) -> tensor<2x8xf32>
  %y = linalg.matmul ins(%x, %w : tensor<2x16xf32>, tensor<16x8xf32>) outs(%init : tensor<2x8xf32>) -> tensor<2x8xf32>
  return %y : tensor<2x8xf32>
}
