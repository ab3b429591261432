// tasd-cpu-interchange-transposes: a transpose that moves the input's last dim
// (a key tensor [tokens, batch, heads, d] -> [batch, heads, d, tokens]) becomes
// a linalg.generic copy whose innermost loop (last dim) walks the input's last
// dim and whose next loop walks the output's last dim; a transpose that keeps
// the last dim last is left as it is. Same bits as the transpose: test/python/test_cpu_runtime.py.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-interchange-transposes | FileCheck %s

// CHECK: #[[IN:.*]] = affine_map<(d0, d1, d2, d3) -> (d2, d0, d1, d3)>
// CHECK: #[[OUT:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d3, d2)>
// CHECK-LABEL: func.func @key_transpose(
// CHECK-NOT: linalg.transpose
// CHECK: linalg.generic {indexing_maps = [#[[IN]], #[[OUT]]], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
// CHECK-SAME: ins(%arg0 : tensor<16x2x4x8xf32>) outs(%{{.*}} : tensor<2x4x8x16xf32>)
// CHECK-NEXT: ^bb0(%[[A:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: linalg.yield %[[A]] : f32
func.func @key_transpose(%k: tensor<16x2x4x8xf32>) -> tensor<2x4x8x16xf32> {
  %0 = tensor.empty() : tensor<2x4x8x16xf32>
  %1 = linalg.transpose ins(%k : tensor<16x2x4x8xf32>) outs(%0 : tensor<2x4x8x16xf32>) permutation = [1, 2, 3, 0]
  return %1 : tensor<2x4x8x16xf32>
}

// -----

// CHECK-LABEL: func.func @heads_split(
// CHECK: linalg.transpose
// CHECK-SAME: permutation = [1, 0, 2]
// CHECK-NOT: linalg.generic
func.func @heads_split(%x: tensor<16x2x8xf32>) -> tensor<2x16x8xf32> {
  %0 = tensor.empty() : tensor<2x16x8xf32>
  %1 = linalg.transpose ins(%x : tensor<16x2x8xf32>) outs(%0 : tensor<2x16x8xf32>) permutation = [1, 0, 2]
  return %1 : tensor<2x16x8xf32>
}

// -----

// Not a candidate: a transpose on memrefs (after bufferization there is no
// result to replace) is left as it is.
// CHECK-LABEL: func.func @on_buffers(
// CHECK: linalg.transpose ins(%arg0 : memref<16x8xf32>) outs(%arg1 : memref<8x16xf32>) permutation = [1, 0]
// CHECK-NOT: linalg.generic
func.func @on_buffers(%x: memref<16x8xf32>, %y: memref<8x16xf32>) {
  linalg.transpose ins(%x : memref<16x8xf32>) outs(%y : memref<8x16xf32>) permutation = [1, 0]
  return
}
