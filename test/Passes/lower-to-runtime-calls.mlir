// RUN: tasdc-opt %s -p 'tasd-decompose-weights{config=2:4+1:4},tasd-lower-to-runtime-calls' | FileCheck %s
// RUN: tasdc-opt %s -p 'tasd-decompose-weights{config=2:4},tasd-lower-to-runtime-calls,tasd-cpu-to-llvm' | FileCheck %s --check-prefix=LLVM
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-decompose-weights{config=2:4},tasd-cpu-to-llvm' | FileCheck %s --check-prefix=ORDER

// The series becomes a destination-passing call; the declaration carries the
// kernel description and the compressed weights.
// CHECK: func.func private @tasd_kernel_0(memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>)
// CHECK-SAME: llvm.emit_c_interface
// CHECK-SAME: tasd.kernel = {config = "2:4+1:4", dense_shape = array<i64: 2, 8>, kind = "matmul", layer = "matmul_0", result_shape = array<i64: 2, 4>, sparse_operand = 1 : i64, terms = [{axis = 0 : i64, dense_shape = array<i64: 8, 4>, m = 4 : i64, n = 2 : i64, padding = 0 : i64}, {axis = 0 : i64, dense_shape = array<i64: 8, 4>, m = 4 : i64, n = 1 : i64, padding = 0 : i64}]}
// CHECK-SAME: tasd.weights = [dense_resource<matmul_0_t0_2of4_values> : tensor<4x4xf32>, dense_resource<matmul_0_t0_2of4_indices> : tensor<4x4xi8>, dense_resource<matmul_0_t1_1of4_values> : tensor<2x4xf32>, dense_resource<matmul_0_t1_1of4_indices> : tensor<2x4xi8>]
// CHECK-LABEL: func.func @f
// CHECK-NOT: tasd.
// CHECK: %[[X:.*]] = bufferization.to_buffer %arg0 read_only
// CHECK: %[[XC:.*]] = memref.cast %[[X]]
// CHECK: %[[Y:.*]] = memref.alloc() {alignment = 64 : i64} : memref<2x4xf32>
// CHECK: %[[YC:.*]] = memref.cast %[[Y]]
// CHECK: call @tasd_kernel_0(%[[XC]], %[[YC]])
// CHECK: %[[R:.*]] = bufferization.to_tensor %[[Y]] restrict writable
// CHECK: return %[[R]]

// LLVM: llvm.func @_mlir_ciface_tasd_kernel_0(!llvm.ptr, !llvm.ptr)
// LLVM: llvm.func @_mlir_ciface_f(
// LLVM-NOT: tasd.series

// ORDER: tasdc-opt: error: tasd-cpu-to-llvm: 'tasd.{{.*}}' must be lowered first (run tasd-lower-to-runtime-calls)

func.func @f(%x: tensor<2x8xf32>) -> tensor<2x4xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0],
                             [8.0, 9.0, 1.0, 2.0], [3.0, 4.0, 5.0, 6.0], [7.0, 8.0, 9.0, 1.0], [2.0, 3.0, 4.0, 5.0]]> : tensor<8x4xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x4xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x4xf32>) -> tensor<2x4xf32>
  %y = linalg.matmul ins(%x, %w : tensor<2x8xf32>, tensor<8x4xf32>) outs(%init : tensor<2x4xf32>) -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}
