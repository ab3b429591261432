// tasd-cpu-fold-batch-broadcasts: a batch_matmul whose right operand is a
// matrix broadcast over the batch becomes one matmul over the folded batch;
// other batch_matmuls are left alone.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-fold-batch-broadcasts | FileCheck %s
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-fold-batch-broadcasts{batch=1}' | FileCheck %s --check-prefix=BAD
// BAD: tasdc-opt: error: pass 'tasd-cpu-fold-batch-broadcasts' has no option 'batch'

#bcast = affine_map<(d0, d1, d2) -> (d1, d2)>
#id = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @generic_broadcast(
// CHECK-SAME: %[[A:.*]]: tensor<4x3x8xf32>, %[[W:.*]]: tensor<8x5xf32>
// CHECK-NOT: linalg.generic
// CHECK-DAG: %[[A2:.*]] = tensor.collapse_shape %[[A]] {{\[\[}}0, 1], [2]] : tensor<4x3x8xf32> into tensor<12x8xf32>
// CHECK-DAG: %[[C2:.*]] = tensor.collapse_shape %{{.*}} {{\[\[}}0, 1], [2]] : tensor<4x3x5xf32> into tensor<12x5xf32>
// CHECK: %[[P:.*]] = linalg.matmul {tasd.layer = "bmm"} ins(%[[A2]], %[[W]] : tensor<12x8xf32>, tensor<8x5xf32>) outs(%[[C2]] : tensor<12x5xf32>)
// CHECK: %[[R:.*]] = tensor.expand_shape %[[P]] {{\[\[}}0, 1], [2]] output_shape [4, 3, 5] : tensor<12x5xf32> into tensor<4x3x5xf32>
// CHECK-NOT: linalg.batch_matmul
// CHECK: return %[[R]]
func.func @generic_broadcast(%a: tensor<4x3x8xf32>, %w: tensor<8x5xf32>) -> tensor<4x3x5xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x8x5xf32>
  %b = linalg.generic {indexing_maps = [#bcast, #id], iterator_types = ["parallel", "parallel", "parallel"]} ins(%w : tensor<8x5xf32>) outs(%e : tensor<4x8x5xf32>) {
  ^bb0(%in: f32, %out: f32):
    linalg.yield %in : f32
  } -> tensor<4x8x5xf32>
  %o = tensor.empty() : tensor<4x3x5xf32>
  %init = linalg.fill ins(%zero : f32) outs(%o : tensor<4x3x5xf32>) -> tensor<4x3x5xf32>
  %y = linalg.batch_matmul {tasd.layer = "bmm"} ins(%a, %b : tensor<4x3x8xf32>, tensor<4x8x5xf32>) outs(%init : tensor<4x3x5xf32>) -> tensor<4x3x5xf32>
  return %y : tensor<4x3x5xf32>
}

// -----

// The named linalg.broadcast; the broadcast stays while something else uses it.
// CHECK-LABEL: func.func @named_broadcast_kept(
// CHECK: %[[B:.*]] = linalg.broadcast
// CHECK: linalg.matmul
// CHECK-NOT: linalg.batch_matmul
// CHECK: return %{{.*}}, %[[B]]
func.func @named_broadcast_kept(%a: tensor<2x3x8xf32>, %w: tensor<8x5xf32>, %init: tensor<2x3x5xf32>) -> (tensor<2x3x5xf32>, tensor<2x8x5xf32>) {
  %e = tensor.empty() : tensor<2x8x5xf32>
  %b = linalg.broadcast ins(%w : tensor<8x5xf32>) outs(%e : tensor<2x8x5xf32>) dimensions = [0]
  %y = linalg.batch_matmul ins(%a, %b : tensor<2x3x8xf32>, tensor<2x8x5xf32>) outs(%init : tensor<2x3x5xf32>) -> tensor<2x3x5xf32>
  return %y, %b : tensor<2x3x5xf32>, tensor<2x8x5xf32>
}

// -----

// Not a batch broadcast (a run-time batch of matrices, a broadcast on the left): unchanged.
// CHECK-LABEL: func.func @unchanged(
// CHECK: linalg.batch_matmul ins(%{{.*}}, %{{.*}} : tensor<2x3x8xf32>, tensor<2x8x5xf32>)
// CHECK: linalg.batch_matmul ins(%{{.*}}, %{{.*}} : tensor<2x3x8xf32>, tensor<2x8x5xf32>)
// CHECK-NOT: linalg.matmul
func.func @unchanged(%a: tensor<2x3x8xf32>, %b: tensor<2x8x5xf32>, %m: tensor<3x8xf32>, %init: tensor<2x3x5xf32>) -> (tensor<2x3x5xf32>, tensor<2x3x5xf32>) {
  %y = linalg.batch_matmul ins(%a, %b : tensor<2x3x8xf32>, tensor<2x8x5xf32>) outs(%init : tensor<2x3x5xf32>) -> tensor<2x3x5xf32>
  %e = tensor.empty() : tensor<2x3x8xf32>
  %l = linalg.broadcast ins(%m : tensor<3x8xf32>) outs(%e : tensor<2x3x8xf32>) dimensions = [0]
  %z = linalg.batch_matmul ins(%l, %b : tensor<2x3x8xf32>, tensor<2x8x5xf32>) outs(%init : tensor<2x3x5xf32>) -> tensor<2x3x5xf32>
  return %y, %z : tensor<2x3x5xf32>, tensor<2x3x5xf32>
}
