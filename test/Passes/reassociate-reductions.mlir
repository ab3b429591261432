// tasd-cpu-reassociate-reductions: the yielded combiner of an f32 reduction
// in a linalg.generic (it takes the output block argument) gets
// fastmath<reassoc>, flags it already has are kept; the rest of the body,
// parallel generics and non-f32 reductions are left alone.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-reassociate-reductions | FileCheck %s
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-reassociate-reductions{fast=1}' | FileCheck %s --check-prefix=BAD
// BAD: tasdc-opt: error: pass 'tasd-cpu-reassociate-reductions' has no option 'fast'

// Softmax: row max, then row sum of exp.
// CHECK-LABEL: func.func @softmax_rows(
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]
// CHECK: arith.maximumf %{{.*}}, %{{.*}} fastmath<reassoc> : f32
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]
// CHECK: %[[E:.*]] = math.exp %{{.*}} : f32
// CHECK-NEXT: arith.addf %[[E]], %{{.*}} fastmath<reassoc> : f32
func.func @softmax_rows(%x: tensor<4x8xf32>, %o: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  %m = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x8xf32>) outs(%o : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %r = arith.maximumf %in, %out : f32
    linalg.yield %r : f32
  } -> tensor<4xf32>
  %s = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x8xf32>) outs(%o : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %e = math.exp %in : f32
    %r = arith.addf %e, %out : f32
    linalg.yield %r : f32
  } -> tensor<4xf32>
  return %m, %s : tensor<4xf32>, tensor<4xf32>
}

// -----

// Existing flags are kept; an op that is not the yielded combiner is not touched.
// CHECK-LABEL: func.func @keeps_flags(
// CHECK: arith.mulf %{{.*}}, %{{.*}} fastmath<nnan,contract> : f32
// CHECK: arith.addf %{{.*}}, %{{.*}} fastmath<reassoc,nnan,contract> : f32
func.func @keeps_flags(%x: tensor<4x8xf32>, %o: tensor<4xf32>) -> tensor<4xf32> {
  %r = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x8xf32>) outs(%o : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %e = arith.mulf %in, %in fastmath<nnan,contract> : f32
    %s = arith.addf %e, %out fastmath<nnan,contract> : f32
    linalg.yield %s : f32
  } -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

// Left alone: a parallel generic, an f64 reduction, and a yielded addf that
// does not read the output (not a running combination).
// CHECK-LABEL: func.func @left_alone(
// CHECK-NOT: reassoc
// CHECK: return
func.func @left_alone(%x: tensor<4x8xf32>, %o: tensor<4xf32>, %xd: tensor<4x8xf64>, %od: tensor<4xf64>, %y: tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4xf64>, tensor<4xf32>) {
  %p = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<4x8xf32>) outs(%y : tensor<4x8xf32>) {
  ^bb0(%in: f32, %out: f32):
    %r = arith.addf %in, %out : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %d = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%xd : tensor<4x8xf64>) outs(%od : tensor<4xf64>) {
  ^bb0(%in: f64, %out: f64):
    %r = arith.addf %in, %out : f64
    linalg.yield %r : f64
  } -> tensor<4xf64>
  %l = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x8xf32>) outs(%o : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %r = arith.addf %in, %in : f32
    linalg.yield %r : f32
  } -> tensor<4xf32>
  return %p, %d, %l : tensor<4x8xf32>, tensor<4xf64>, tensor<4xf32>
}
