// RUN: tasdc-opt %s --split-input-file -p 'tasd-lower-activations-to-calls' | FileCheck %s
// RUN: tasdc-opt %s --split-input-file -p 'tasd-lower-activations-to-calls,tasd-lower-to-runtime-calls,tasd-cpu-to-llvm' | FileCheck %s --check-prefix=LLVM
// RUN: %expect-exit 2 tasdc-opt %s --split-input-file -p 'tasd-cpu-to-llvm' | FileCheck %s --check-prefix=ORDER
// The reference path (series expanded back to dense linalg) meets matmuls built without indexing_maps:
// RUN: tasdc-opt %s --split-input-file -p 'tasd-expand-to-linalg,tasd-lower-activations-to-calls' | FileCheck %s --check-prefix=EXPAND

// ORDER: tasdc-opt: error: tasd-cpu-to-llvm: 'tasd.decompose_activation' must be lowered first (run tasd-lower-activations-to-calls)
// LLVM: llvm.func @_mlir_ciface_tasd_act_kernel_0(!llvm.ptr, !llvm.ptr)
// LLVM-NOT: tasd.decompose_activation

// nn.Linear with a decomposed input: one destination-passing call on the
// *undecomposed* input; the declaration carries the kernel description and
// the dense weight [K, O]; the bias init is added back.
// CHECK: func.func private @tasd_act_kernel_0(memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>)
// CHECK-SAME: llvm.emit_c_interface
// CHECK-SAME: tasd.act_kernel = {act_operand = 0 : i64, axis = 1 : i64, config = "2:4+1:4", dense_shape = array<i64: 2, 8>, kind = "act_matmul", layer = "matmul_0", result_shape = array<i64: 2, 4>}
// CHECK-SAME: tasd.act_weights = [dense_resource<tasd_act_kernel_0_weight> : tensor<8x4xf32>]
// CHECK-LABEL: func.func @linear
// CHECK-NOT: tasd.decompose_activation
// CHECK-NOT: linalg.matmul
// CHECK: %[[X:.*]] = bufferization.to_buffer %arg0 read_only
// CHECK: %[[XC:.*]] = memref.cast %[[X]]
// CHECK: %[[Y:.*]] = memref.alloc() {alignment = 64 : i64} : memref<2x4xf32>
// CHECK: call @tasd_act_kernel_0(%[[XC]], %{{.*}})
// CHECK: %[[R:.*]] = bufferization.to_tensor %[[Y]] restrict writable
// CHECK: %[[S:.*]] = arith.addf %[[R]], %{{.*}} : tensor<2x4xf32>
// CHECK: return %[[S]]
func.func @linear(%x: tensor<2x8xf32>, %bias: tensor<2x4xf32>) -> tensor<2x4xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], [9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
                             [8.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [7.0, 8.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0]]> : tensor<4x8xf32>
  %e0 = tensor.empty() : tensor<8x4xf32>
  %wt = linalg.transpose ins(%w : tensor<4x8xf32>) outs(%e0 : tensor<8x4xf32>) permutation = [1, 0]
  %a = "tasd.decompose_activation"(%x) {config = "2:4+1:4", axis = 1 : i64} : (tensor<2x8xf32>) -> tensor<2x8xf32>
  %y = linalg.matmul ins(%a, %wt : tensor<2x8xf32>, tensor<8x4xf32>) outs(%bias : tensor<2x4xf32>) -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}

// -----

// TASD-W and TASD-A combined: the weight series collapses into its exact
// term sum and the whole series becomes one activation-kernel call.
// CHECK: func.func private @tasd_act_kernel_0
// CHECK-SAME: kind = "act_matmul"
// CHECK-SAME: tasd.act_weights = [dense_resource<tasd_act_kernel_0_weight> : tensor<8x5xf32>]
// CHECK-LABEL: func.func @combined
// CHECK-NOT: tasd.
// CHECK: call @tasd_act_kernel_0
// EXPAND: config = "2:4", dense_shape = array<i64: 3, 8>, kind = "act_matmul"
// EXPAND-SAME: tasd.act_weights = [dense_resource<tasd_act_kernel_0_weight> : tensor<8x5xf32>]
// EXPAND-LABEL: func.func @combined
// EXPAND-NOT: linalg.matmul
// EXPAND-NOT: tasd.
// EXPAND: call @tasd_act_kernel_0
func.func @combined(%x: tensor<3x8xf32>) -> tensor<3x5xf32> {
  %v = arith.constant dense<1.0> : tensor<4x5xf32>
  %i = arith.constant dense<[[0, 0, 0, 0, 0], [2, 2, 2, 2, 2], [1, 1, 1, 1, 1], [3, 3, 3, 3, 3]]> : tensor<4x5xi8>
  %a = "tasd.decompose_activation"(%x) {config = "2:4", axis = 1 : i64} : (tensor<3x8xf32>) -> tensor<3x8xf32>
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  %t = "tasd.matmul"(%a, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  %y = "tasd.series"(%t) {config = "2:4"} : (tensor<3x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}

// -----

// No contraction with a weight consumes it (activation x activation): the
// decomposed value itself comes from an act_decompose call.
// CHECK: func.func private @tasd_act_kernel_0
// CHECK-SAME: kind = "act_decompose"
// CHECK-LABEL: func.func @qk
// CHECK: call @tasd_act_kernel_0
// CHECK: %[[Q:.*]] = bufferization.to_tensor
// CHECK: linalg.matmul ins(%[[Q]], %arg1
func.func @qk(%q: tensor<4x8xf32>, %k: tensor<8x4xf32>, %init: tensor<4x4xf32>) -> tensor<4x4xf32> {
  %a = "tasd.decompose_activation"(%q) {config = "1:4", axis = 1 : i64} : (tensor<4x8xf32>) -> tensor<4x8xf32>
  %y = linalg.matmul ins(%a, %k : tensor<4x8xf32>, tensor<8x4xf32>) outs(%init : tensor<4x4xf32>) -> tensor<4x4xf32>
  return %y : tensor<4x4xf32>
}
