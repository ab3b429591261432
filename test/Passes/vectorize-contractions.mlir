// tasd-cpu-vectorize-contractions tiles dense matmuls into register tiles
// (4x16 here; remainders get their own static tiles) and lowers the
// vector.contract to FMAs with the accumulator hoisted out of the
// reduction loop. Ops it does not take are left as they are.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-vectorize-contractions | FileCheck %s
// RUN: %expect-exit 2 tasdc-opt %s --split-input-file -p 'tasd-cpu-vectorize-contractions{reg-m=0}' | FileCheck %s --check-prefix=BAD
// RUN: %expect-exit 2 tasdc-opt %s --split-input-file -p 'tasd-cpu-vectorize-contractions{tile-m=10 reg-m=4}' | FileCheck %s --check-prefix=BAD2
// BAD: tasdc-opt: error: pass 'tasd-cpu-vectorize-contractions': reg-m must be >= 1
// BAD2: tasdc-opt: error: pass 'tasd-cpu-vectorize-contractions': tile-m/tile-n must be multiples of reg-m/reg-n

// CHECK-LABEL: func.func @matmul
// CHECK-NOT: linalg.matmul
// CHECK: scf.for
// CHECK: vector.transfer_read {{.*}} : tensor<8x32xf32>, vector<4x16xf32>
// CHECK: scf.for {{.*}} -> (tensor<8x32xf32>, vector<4x16xf32>)
// CHECK: vector.transfer_read {{.*}} : tensor<8x6xf32>, vector<4x1xf32>
// CHECK: vector.transfer_read {{.*}} : tensor<6x32xf32>, vector<1x16xf32>
// CHECK-COUNT-4: vector.fma {{.*}} : vector<16xf32>
// CHECK: vector.transfer_write {{.*}} : vector<4x16xf32>, tensor<8x32xf32>
// CHECK-NOT: linalg.matmul
// CHECK: return
func.func @matmul(%a: tensor<8x6xf32>, %b: tensor<6x32xf32>) -> tensor<8x32xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<8x32xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<8x32xf32>) -> tensor<8x32xf32>
  %y = linalg.matmul ins(%a, %b : tensor<8x6xf32>, tensor<6x32xf32>) outs(%init : tensor<8x32xf32>) -> tensor<8x32xf32>
  return %y : tensor<8x32xf32>
}

// -----

// Odd shapes: 5 = 4 + 1 rows, 19 = 16 + 3 columns: four static parts, no masks.
// CHECK-LABEL: func.func @odd
// CHECK-NOT: vector.mask
// CHECK-DAG: vector<4x16xf32>
// CHECK-DAG: vector<4x3xf32>
// CHECK-DAG: vector<1x16xf32>
// CHECK-DAG: vector<1x3xf32>
// CHECK-NOT: linalg.batch_matmul
// CHECK: return
func.func @odd(%a: tensor<2x5x7xf32>, %b: tensor<2x7x19xf32>) -> tensor<2x5x19xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x5x19xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x5x19xf32>) -> tensor<2x5x19xf32>
  %y = linalg.batch_matmul ins(%a, %b : tensor<2x5x7xf32>, tensor<2x7x19xf32>) outs(%init : tensor<2x5x19xf32>) -> tensor<2x5x19xf32>
  return %y : tensor<2x5x19xf32>
}

// -----

// Left alone: a transposed-operand matmul, a dynamic shape, a convolution, f64.
// CHECK-LABEL: func.func @untouched
// CHECK-NOT: vector.
// CHECK: linalg.matmul indexing_maps
// CHECK: linalg.matmul ins({{.*}} : tensor<?x4xf32>, tensor<4x3xf32>)
// CHECK: linalg.conv_2d_nchw_fchw
// CHECK: linalg.matmul ins({{.*}} : tensor<4x4xf64>, tensor<4x4xf64>)
// CHECK-NOT: vector.
// CHECK-NOT: tasd.vectorize_id
#a = affine_map<(d0, d1, d2) -> (d2, d0)>
#b = affine_map<(d0, d1, d2) -> (d2, d1)>
#c = affine_map<(d0, d1, d2) -> (d0, d1)>
func.func @untouched(%a: tensor<13x7xf32>, %b: tensor<13x5xf32>, %d: tensor<?x4xf32>, %w4: tensor<4x3xf32>,
                     %x: tensor<1x1x10x10xf32>, %w: tensor<2x1x3x3xf32>, %f: tensor<4x4xf64>)
    -> (tensor<7x5xf32>, tensor<?x3xf32>, tensor<1x2x8x8xf32>, tensor<4x4xf64>) {
  %z = arith.constant 0.0 : f32
  %c0 = arith.constant 0 : index
  %e0 = tensor.empty() : tensor<7x5xf32>
  %i0 = linalg.fill ins(%z : f32) outs(%e0 : tensor<7x5xf32>) -> tensor<7x5xf32>
  %t = linalg.matmul indexing_maps = [#a, #b, #c] ins(%a, %b : tensor<13x7xf32>, tensor<13x5xf32>) outs(%i0 : tensor<7x5xf32>) -> tensor<7x5xf32>
  %n = tensor.dim %d, %c0 : tensor<?x4xf32>
  %e1 = tensor.empty(%n) : tensor<?x3xf32>
  %dyn = linalg.matmul ins(%d, %w4 : tensor<?x4xf32>, tensor<4x3xf32>) outs(%e1 : tensor<?x3xf32>) -> tensor<?x3xf32>
  %e2 = tensor.empty() : tensor<1x2x8x8xf32>
  %conv = linalg.conv_2d_nchw_fchw ins(%x, %w : tensor<1x1x10x10xf32>, tensor<2x1x3x3xf32>) outs(%e2 : tensor<1x2x8x8xf32>) -> tensor<1x2x8x8xf32>
  %f64 = linalg.matmul ins(%f, %f : tensor<4x4xf64>, tensor<4x4xf64>) outs(%f : tensor<4x4xf64>) -> tensor<4x4xf64>
  return %t, %dyn, %conv, %f64 : tensor<7x5xf32>, tensor<?x3xf32>, tensor<1x2x8x8xf32>, tensor<4x4xf64>
}
