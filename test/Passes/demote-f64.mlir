// tasd-cpu-demote-f64: f64 tensor arithmetic that widens f32 data and is
// narrowed back (torch-mlir's layer-norm variance) is done in f32; a function
// with an f64 argument/result, an op outside the allowed set on f64 tensors,
// or a longer reduction than max-reduction is left unchanged.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-demote-f64 | FileCheck %s
// RUN: tasdc-opt %s --split-input-file -p 'tasd-cpu-demote-f64{max-reduction=8}' | FileCheck %s --check-prefix=SHORT
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-demote-f64{max-reduction=0}' | FileCheck %s --check-prefix=BAD
// BAD: tasdc-opt: error: pass 'tasd-cpu-demote-f64': max-reduction must be >= 1, got 0

#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0, 0)>
// CHECK-LABEL: func.func @variance(
// CHECK-NOT: tensor<{{[0-9x]*}}xf64>
// CHECK-NOT: arith.extf
// CHECK: linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<4x1xf32>)
// CHECK: ^bb0(%[[IN:.*]]: f32, %[[OUT:.*]]: f32):
// CHECK-NEXT: arith.addf %[[IN]], %[[OUT]] : f32
// CHECK: arith.constant 1.600000e+01 : f32
// CHECK: arith.divf %{{.*}}, %{{.*}} : f32
// CHECK-NOT: arith.truncf
// CHECK: return %{{.*}} : tensor<4x1xf32>
// SHORT-LABEL: func.func @variance(
// SHORT: tensor<4x16xf64>
// SHORT: arith.truncf
func.func @variance(%x: tensor<4x16xf32>) -> tensor<4x1xf32> {
  %zero = arith.constant 0.0 : f64
  %n = arith.constant 16.0 : f64
  %e = tensor.empty() : tensor<4x16xf64>
  %w = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<4x16xf32>) outs(%e : tensor<4x16xf64>) {
  ^bb0(%in: f32, %out: f64):
    %v = arith.extf %in : f32 to f64
    linalg.yield %v : f64
  } -> tensor<4x16xf64>
  %e1 = tensor.empty() : tensor<4x1xf64>
  %z = linalg.fill ins(%zero : f64) outs(%e1 : tensor<4x1xf64>) -> tensor<4x1xf64>
  %s = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]} ins(%w : tensor<4x16xf64>) outs(%z : tensor<4x1xf64>) {
  ^bb0(%in: f64, %out: f64):
    %v = arith.addf %in, %out : f64
    linalg.yield %v : f64
  } -> tensor<4x1xf64>
  %e2 = tensor.empty() : tensor<4x1xf32>
  %m = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%s : tensor<4x1xf64>) outs(%e2 : tensor<4x1xf32>) {
  ^bb0(%in: f64, %out: f32):
    %d = arith.divf %in, %n : f64
    %t = arith.truncf %d : f64 to f32
    linalg.yield %t : f32
  } -> tensor<4x1xf32>
  return %m : tensor<4x1xf32>
}

// -----

// An f64 result keeps the function in f64.
// CHECK-LABEL: func.func @f64_result(
// CHECK: arith.extf %{{.*}} : f32 to f64
// CHECK: return %{{.*}} : tensor<4xf64>
func.func @f64_result(%x: tensor<4xf32>) -> tensor<4xf64> {
  %e = tensor.empty() : tensor<4xf64>
  %w = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]} ins(%x : tensor<4xf32>) outs(%e : tensor<4xf64>) {
  ^bb0(%in: f32, %out: f64):
    %v = arith.extf %in : f32 to f64
    linalg.yield %v : f64
  } -> tensor<4xf64>
  return %w : tensor<4xf64>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
// An f64 tensor reaching an op outside the allowed set (here a matmul) keeps the function in f64.
// CHECK-LABEL: func.func @f64_matmul(
// CHECK: linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<2x2xf64>, tensor<2x2xf64>)
func.func @f64_matmul(%x: tensor<2x2xf32>) -> tensor<2x2xf32> {
  %e = tensor.empty() : tensor<2x2xf64>
  %w = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<2x2xf32>) outs(%e : tensor<2x2xf64>) {
  ^bb0(%in: f32, %out: f64):
    %v = arith.extf %in : f32 to f64
    linalg.yield %v : f64
  } -> tensor<2x2xf64>
  %p = linalg.matmul ins(%w, %w : tensor<2x2xf64>, tensor<2x2xf64>) outs(%w : tensor<2x2xf64>) -> tensor<2x2xf64>
  %e2 = tensor.empty() : tensor<2x2xf32>
  %t = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%p : tensor<2x2xf64>) outs(%e2 : tensor<2x2xf32>) {
  ^bb0(%in: f64, %out: f32):
    %v = arith.truncf %in : f64 to f32
    linalg.yield %v : f32
  } -> tensor<2x2xf32>
  return %t : tensor<2x2xf32>
}
