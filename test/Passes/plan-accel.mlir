// tasd-plan-accel: every contraction layer gets a tasd.accel plan for the target.
// RUN: tasdc-opt %s -p 'tasd-decompose-weights{config=2:4+1:4},tasd-plan-accel{target=vegeta}' | FileCheck %s
// RUN: tasdc-opt %s -p 'tasd-decompose-weights{config=2:4+1:4},tasd-plan-accel{target=stc}' | FileCheck %s --check-prefix=MAP
// RUN: tasdc-opt %s -p 'tasd-plan-accel{target=%S/../../runtime/accel/hardware/ttc-m8.toml activations=2:8}' | FileCheck %s --check-prefix=TASDA
// RUN: tasdc-opt %s -p 'tasd-decompose-weights{config=2:4},tasd-plan-accel{target=stc dense=true}' | FileCheck %s --check-prefix=DENSE
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-decompose-weights{config=2:4+1:4},tasd-plan-accel{target=stc mode=refuse}' | FileCheck %s --check-prefix=REFUSE
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-plan-accel{target=stc mode=refuse activations=2:4}' | FileCheck %s --check-prefix=NOUNITS
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-plan-accel{target=tpu}' | FileCheck %s --check-prefix=TARGET
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-plan-accel{target=%S/does-not-exist.toml}' | FileCheck %s --check-prefix=NOFILE
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-plan-accel{mode=guess}' | FileCheck %s --check-prefix=MODE

// A series on VEGETA: 2:4 and 1:4 are both native. The weight B[K=8, N=4]
// of x[2, 8] . B is A[M=4, K=8] of the GEMM, N = 2 rows of x.
// CHECK-LABEL: func.func @linear
// CHECK: "tasd.series"
// CHECK-SAME: tasd.accel = {a_dram_passes = 1 : i64, b_chunk_cols = 0 : i64, b_dram_passes = 1 : i64, b_in_rf = true, b_source = 16 : i64, bound = "compute", compute_cycles = 94 : i64, dense_macs = 64 : i64,
// CHECK-SAME: edp = {{.*}}, energy = {dram = {{.*}}, extraction = 0.000000e+00 : f64, glb = {{.*}}, mac = {{.*}}, metadata = {{.*}}, rf = {{.*}}}, energy_j = {{.*}}, executed = "2:4+1:4",
// CHECK-SAME: fold_cols = 1 : i64, fold_rows = 1 : i64, folds = 1 : i64, gemm = array<i64: 1, 4, 8, 2>, glb_cycles = {{.*}}, kind = "matmul", latency_cycles = 9.400000e+01 : f64,
// CHECK-SAME: mac_cycles = 6 : i64, macs = 48 : i64, mapped_from = "", mapped_to = "", mode = "map", operand = "weight",
// CHECK-SAME: schedule = "a_resident", series = "2:4+1:4", target = "vegeta", tasd_a = false,
// CHECK-SAME: terms = {t0 = {executed = "2:4", mapped = false, requested = "2:4", speedup = 2.000000e+00 : f64}, t1 = {executed = "1:4", mapped = false, requested = "1:4", speedup = 4.000000e+00 : f64}}, waves = 1 : i64}
// CHECK-SAME: tasd.layer = "matmul_0"

// On STC, 1:4 is not native: map mode runs it as 2:4 and records it.
// MAP-LABEL: func.func @linear
// MAP: "tasd.series"
// MAP-SAME: executed = "2:4+2:4"
// MAP-SAME: mapped_from = "1:4", mapped_to = "2:4"
// MAP-SAME: series = "2:4+1:4", target = "stc"
// MAP-SAME: t1 = {executed = "2:4", mapped = true, requested = "1:4", speedup = 2.000000e+00 : f64}
func.func @linear(%x: tensor<2x8xf32>) -> tensor<2x4xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0],
                             [8.0, 9.0, 1.0, 2.0], [3.0, 4.0, 5.0, 6.0], [7.0, 8.0, 9.0, 1.0], [2.0, 3.0, 4.0, 5.0]]> : tensor<8x4xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x4xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x4xf32>) -> tensor<2x4xf32>
  %y = linalg.matmul ins(%x, %w : tensor<2x8xf32>, tensor<8x4xf32>) outs(%init : tensor<2x4xf32>) -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}

// Activation x activation stays a dense linalg op with the lhs as A:
// [batch=2, M=4, K=3, N=5]; it keeps the scan's name.
// CHECK-LABEL: func.func @attention
// CHECK: linalg.batch_matmul {tasd.accel = {{{.*}}executed = "dense"{{.*}}gemm = array<i64: 2, 4, 3, 5>{{.*}}operand = "activation"{{.*}}series = "dense", target = "vegeta", tasd_a = false{{.*}}waves = 2 : i64}, tasd.layer = "batch_matmul_1"}

// With activations=2:8 on TTC-M8 (by path) the lhs is decomposed at run time.
// TASDA-LABEL: func.func @linear
// TASDA: linalg.matmul {tasd.accel = {{{.*}}operand = "weight", {{.*}}series = "dense", target = "ttc-m8", tasd_a = false{{.*}}}, tasd.layer = "matmul_0"}
// TASDA-LABEL: func.func @attention
// TASDA: linalg.batch_matmul {tasd.accel = {{{.*}}executed = "2:8"{{.*}}extraction_cycles = 1.000000e+00 : f64{{.*}}operand = "activation"{{.*}}series = "2:8", target = "ttc-m8", tasd_a = true{{.*}}}, tasd.layer = "batch_matmul_1"}

// dense=true plans the same layers as dense GEMMs (the simulator's baseline).
// DENSE: "tasd.series"
// DENSE-SAME: executed = "dense"
// DENSE-SAME: series = "dense", target = "stc"
func.func @attention(%q: tensor<2x4x3xf32>, %k: tensor<2x3x5xf32>) -> tensor<2x4x5xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x4x5xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x4x5xf32>) -> tensor<2x4x5xf32>
  %s = linalg.batch_matmul ins(%q, %k : tensor<2x4x3xf32>, tensor<2x3x5xf32>) outs(%init : tensor<2x4x5xf32>) -> tensor<2x4x5xf32>
  return %s : tensor<2x4x5xf32>
}

// REFUSE: tasdc-opt: error: layer 'matmul_0': target 'stc' does not run pattern 1:4 natively (native sparse patterns: 2:4); use mode='map' to run it as the next denser native pattern
// NOUNITS: tasdc-opt: error: layer 'batch_matmul_1': target 'stc' has no TASD extraction units: cannot decompose activations at run time (TASD-A) as 2:4
// TARGET: tasdc-opt: error: pass 'tasd-plan-accel': unknown hardware target 'tpu' (shipped: dense, stc, ttc-m8, vegeta; or give a path to a .toml file)
// NOFILE: tasdc-opt: error: pass 'tasd-plan-accel': {{.*}}does-not-exist.toml: cannot read hardware file
// MODE: tasdc-opt: error: pass 'tasd-plan-accel': mode must be one of map, refuse, got 'guess'
