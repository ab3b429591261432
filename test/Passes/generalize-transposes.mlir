// tasd-cpu-generalize-transposes: a transpose on tensors that keeps the last dim
// last (whole rows move: batch-first <-> sequence-first, heads split or merged)
// becomes a linalg.generic copy with a permuted input map, so that
// linalg-fuse-elementwise-ops folds it into the elementwise op that reads it.
// A transpose that moves the last dim, and one on memrefs, are left as they are.
// Same bits with and without: test/python/test_cpu_runtime.py.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-generalize-transposes | FileCheck %s
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-generalize-transposes,linalg-fuse-elementwise-ops | FileCheck %s --check-prefix=FUSED

// CHECK: #[[IN:.*]] = affine_map<(d0, d1, d2) -> (d1, d0, d2)>
// CHECK: #[[ID:.*]] = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @sequence_first(
// CHECK-NOT: linalg.transpose
// CHECK: %[[T:.*]] = linalg.generic {indexing_maps = [#[[IN]], #[[ID]]], iterator_types = ["parallel", "parallel", "parallel"]}
// CHECK-SAME: ins(%arg0 : tensor<8x4x16xf32>) outs(%{{.*}} : tensor<4x8x16xf32>)
// CHECK-NEXT: ^bb0(%[[A:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: linalg.yield %[[A]] : f32
// CHECK: linalg.generic
// CHECK-SAME: ins(%[[T]], %arg1 :
// CHECK-NOT: tasd.generalize

// The copy is gone: the bias add reads the batch-first input through the permuted map.
// FUSED: #[[IN:.*]] = affine_map<(d0, d1, d2) -> (d1, d0, d2)>
// FUSED: #[[BIAS:.*]] = affine_map<(d0, d1, d2) -> (d2)>
// FUSED: #[[ID:.*]] = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// FUSED-LABEL: func.func @sequence_first(
// FUSED: linalg.generic {indexing_maps = [#[[IN]], #[[BIAS]], #[[ID]]]
// FUSED-SAME: ins(%arg0, %arg1 : tensor<8x4x16xf32>, tensor<16xf32>)
// FUSED: arith.addf
// FUSED-NOT: linalg.generic
// FUSED: return
func.func @sequence_first(%x: tensor<8x4x16xf32>, %b: tensor<16xf32>) -> tensor<4x8x16xf32> {
  %e = tensor.empty() : tensor<4x8x16xf32>
  %t = linalg.transpose ins(%x : tensor<8x4x16xf32>) outs(%e : tensor<4x8x16xf32>) permutation = [1, 0, 2]
  %r = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%t, %b : tensor<4x8x16xf32>, tensor<16xf32>) outs(%e : tensor<4x8x16xf32>) {
  ^bb0(%in: f32, %bias: f32, %out: f32):
    %s = arith.addf %in, %bias : f32
    linalg.yield %s : f32
  } -> tensor<4x8x16xf32>
  return %r : tensor<4x8x16xf32>
}

// -----

// Heads merged: [batch, heads, tokens, d] -> [tokens, batch, heads, d].
// CHECK: #[[IN:.*]] = affine_map<(d0, d1, d2, d3) -> (d1, d2, d0, d3)>
// CHECK-LABEL: func.func @heads_merge(
// CHECK-NOT: linalg.transpose
// CHECK: linalg.generic {indexing_maps = [#[[IN]], #{{.*}}]
// CHECK-SAME: ins(%arg0 : tensor<2x4x16x8xf32>) outs(%{{.*}} : tensor<16x2x4x8xf32>)
func.func @heads_merge(%x: tensor<2x4x16x8xf32>) -> tensor<16x2x4x8xf32> {
  %0 = tensor.empty() : tensor<16x2x4x8xf32>
  %1 = linalg.transpose ins(%x : tensor<2x4x16x8xf32>) outs(%0 : tensor<16x2x4x8xf32>) permutation = [2, 0, 1, 3]
  return %1 : tensor<16x2x4x8xf32>
}

// -----

// Not a candidate: a transpose that moves the last dim (a key tensor) is left
// for tasd-cpu-interchange-transposes, which picks its loop order.
// CHECK-LABEL: func.func @key_transpose(
// CHECK: linalg.transpose
// CHECK-SAME: permutation = [1, 2, 3, 0]
// CHECK-NOT: linalg.generic
// CHECK-NOT: tasd.generalize
// FUSED-LABEL: func.func @key_transpose(
// FUSED: linalg.transpose
func.func @key_transpose(%k: tensor<16x2x4x8xf32>) -> tensor<2x4x8x16xf32> {
  %0 = tensor.empty() : tensor<2x4x8x16xf32>
  %1 = linalg.transpose ins(%k : tensor<16x2x4x8xf32>) outs(%0 : tensor<2x4x8x16xf32>) permutation = [1, 2, 3, 0]
  return %1 : tensor<2x4x8x16xf32>
}

// -----

// Not a candidate: a transpose on memrefs (after bufferization nothing can fuse it).
// CHECK-LABEL: func.func @on_buffers(
// CHECK: linalg.transpose ins(%arg0 : memref<16x2x8xf32>) outs(%arg1 : memref<2x16x8xf32>) permutation = [1, 0, 2]
// CHECK-NOT: linalg.generic
func.func @on_buffers(%x: memref<16x2x8xf32>, %y: memref<2x16x8xf32>) {
  linalg.transpose ins(%x : memref<16x2x8xf32>) outs(%y : memref<2x16x8xf32>) permutation = [1, 0, 2]
  return
}
