// tasd-select: per-layer series from the target's native patterns under a quality bound.
// RUN: tasdc-opt %s --split-input-file -p 'tasd-select{target=vegeta quality=1.0}' | FileCheck %s --check-prefix=VEGETA
// RUN: tasdc-opt %s --split-input-file -p 'tasd-select{target=stc quality=1.0}' | FileCheck %s --check-prefix=STC
// RUN: tasdc-opt %s --split-input-file -p 'tasd-select{target=dense}' | FileCheck %s --check-prefix=DENSE
// RUN: tasdc-opt %s --split-input-file -p 'tasd-select{target=%S/../../runtime/accel/hardware/ttc-m8.toml quality=1.0 objective=energy}' | FileCheck %s --check-prefix=TTC
// RUN: tasdc-opt %s --split-input-file -p 'tasd-select{target=vegeta quality=1.0},tasd-decompose-weights' | FileCheck %s --check-prefix=APPLY
// RUN: tasdc-opt %s --split-input-file -p 'tasd-select{target=vegeta quality=0.5 max-terms=1}' | FileCheck %s --check-prefix=LOOSE
// Calibration inputs (the function's own input, 3 batches of 2 rows): the layer-output error drives the choice.
// RUN: %python -c "import numpy as np; np.save('%t.npy', np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32))"
// RUN: tasdc-opt %s --split-input-file -p 'tasd-select{target=vegeta quality=0.9 calib=%t.npy}' | FileCheck %s --check-prefix=CALIB
//
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-select{target=tpu}' | FileCheck %s --check-prefix=TARGET
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-select{objective=speed}' | FileCheck %s --check-prefix=OBJECTIVE
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-select{quality=0}' | FileCheck %s --check-prefix=QUALITY0
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-select{quality=1.5}' | FileCheck %s --check-prefix=QUALITY
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-select{quality=high}' | FileCheck %s --check-prefix=QTYPE
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-select{max-terms=0}' | FileCheck %s --check-prefix=TERMS
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-select{calib=%S/does-not-exist.npz}' | FileCheck %s --check-prefix=NOCALIB
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-select{budget=nan}' | FileCheck %s --check-prefix=BUDGET

// TARGET: tasdc-opt: error: pass 'tasd-select': {{.*}}tpu
// OBJECTIVE: tasdc-opt: error: pass 'tasd-select': objective must be one of edp, latency, energy, got 'speed'
// QUALITY0: tasdc-opt: error: pass 'tasd-select': quality must be a number in (0, 1], got '0.0'
// QUALITY: tasdc-opt: error: pass 'tasd-select': quality must be a number in (0, 1], got '1.5'
// QTYPE: tasdc-opt: error: option 'quality' of pass 'tasd-select' expects float, got 'high'
// TERMS: tasdc-opt: error: pass 'tasd-select': max-terms must be an integer in [1, 4], got '0'
// NOCALIB: tasdc-opt: error: pass 'tasd-select': calib: {{.*}}does-not-exist.npz: no such file
// BUDGET: tasdc-opt: error: pass 'tasd-select': budget must be a finite number

// At most one non-zero in every aligned block of 4 along K (the weight is
// B[K=8, N=4]): 1:4 is lossless and the cheapest native series on VEGETA;
// STC only has 2:4; TTC (M = 8) needs 2:8 (<= 2 non-zeros per 8-block; objective energy:
// the 4x8 layer is drain-bound with pipelined folds, so no series lowers its latency);
// the dense target only runs dense.
// VEGETA: module attributes {tasd.selection = {budget = 0.000000e+00 : f64
// VEGETA-LABEL: func.func @one_of_four
// VEGETA: linalg.matmul {tasd.config = "1:4", tasd.layer = "matmul_0", tasd.select = {candidates = [{{.*}}series = "dense"}, {{.*}}lossless = true{{.*}}series = "1:4"}, {{.*}}series = "2:4"}, {{.*}}series = "2:4+1:4"}, {{.*}}series = "2:4+2:4"}], chosen = "1:4", error = 0.000000e+00 : f64, metric = "relative Frobenius error (weight-space proxy)", objective = "edp", step = 0 : i64, target = "vegeta", why = "lossless (at most 1 non-zero in every 4-block) and the cheapest such series
// STC-LABEL: func.func @one_of_four
// STC: linalg.matmul {tasd.config = "2:4", {{.*}}chosen = "2:4"{{.*}}target = "stc"
// TTC-LABEL: func.func @one_of_four
// TTC: linalg.matmul {tasd.config = "2:8", {{.*}}chosen = "2:8"{{.*}}objective = "energy"{{.*}}target = "ttc-m8"
// DENSE-LABEL: func.func @one_of_four
// DENSE: linalg.matmul {tasd.config = "dense", {{.*}}candidates = [{{[{][^{]*}}series = "dense"}], chosen = "dense"{{.*}}why = "left dense: target 'dense' runs only dense"
// APPLY-LABEL: func.func @one_of_four
// APPLY-NOT: linalg.matmul
// APPLY: "tasd.sparse_weight"({{.*}}) {axis = 0 : i64, m = 4 : i64, n = 1 : i64, padding = 0 : i64} : (tensor<2x4xf32>, tensor<2x4xi8>) -> tensor<8x4xf32>
// APPLY: "tasd.series"({{.*}}) {config = "1:4", tasd.layer = "matmul_0", tasd.stats = {{{.*}}lossless = true{{.*}}select = {{{.*}}chosen = "1:4"
// CALIB-LABEL: func.func @one_of_four
// CALIB: tasd.config = "1:4"{{.*}}output_error = 0.000000e+00 : f64{{.*}}metric = "layer-output relative error (calibration)"
func.func @one_of_four(%x: tensor<2x8xf32>) -> tensor<2x4xf32> {
  %w = arith.constant dense<[[1.0, 0.0, 3.0, 0.0], [0.0, 6.0, 0.0, 0.0], [0.0, 0.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0],
                             [8.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 6.0], [0.0, -8.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]> : tensor<8x4xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x4xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x4xf32>) -> tensor<2x4xf32>
  %y = linalg.matmul ins(%x, %w : tensor<2x8xf32>, tensor<8x4xf32>) outs(%init : tensor<2x4xf32>) -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}

// -----

// A dense weight: at quality 1.0 only lossless series may be chosen, and the
// only lossless native series (2:4+2:4) costs more than dense, so the layer
// stays dense with a reason. With a loose bound and one term, a lossy 2:4 or
// 1:4 is taken on the greedy path.
// VEGETA-LABEL: func.func @dense_weight
// VEGETA: linalg.matmul {tasd.config = "dense", {{.*}}chosen = "dense"{{.*}}why = "left dense: nothing fits the error budget: the next greedy step would make it {{.*}}budget left 0)"
// STC-LABEL: func.func @dense_weight
// STC: tasd.config = "dense"
// LOOSE: module attributes {tasd.selection = {budget = 3.000000e+00 : f64{{.*}}candidates = ["dense", "1:4", "2:4"]
// LOOSE-LABEL: func.func @dense_weight
// LOOSE: linalg.matmul {tasd.config = "{{[12]}}:4", {{.*}}why = "greedy step {{[0-9]+}}: best edp saving per unit error
// CALIB-LABEL: func.func @dense_weight
// CALIB: tasd.config = "{{.*}}"{{.*}}metric = "layer-output relative error (calibration)"
func.func @dense_weight(%x: tensor<2x8xf32>) -> tensor<2x4xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0],
                             [8.0, 9.0, 1.0, 2.0], [3.0, 4.0, 5.0, 6.0], [7.0, 8.0, 9.0, 1.0], [2.0, 3.0, 4.0, 5.0]]> : tensor<8x4xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x4xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x4xf32>) -> tensor<2x4xf32>
  %y = linalg.matmul ins(%x, %w : tensor<2x8xf32>, tensor<8x4xf32>) outs(%init : tensor<2x4xf32>) -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}
