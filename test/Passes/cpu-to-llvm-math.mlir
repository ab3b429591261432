// tasd-cpu-to-llvm expands math.fpowi before LLVM (math-expand-ops{ops=fpowi}):
// a constant exponent becomes multiplications (also once the loop nest is
// outlined and the constant is a call operand), a run-time exponent becomes
// libm pow; no llvm.intr.powi with an i64 exponent reaches LLVM, whose
// __powisf2 call takes a C int. Numbers: test/python/test_math_lowering.py.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-to-llvm | FileCheck %s
// RUN: tasdc-opt %s --split-input-file -p 'tasd-cpu-to-llvm{outline=false}' | FileCheck %s --check-prefix=FLAT

// CHECK-LABEL: llvm.func @tasd_nest(
// CHECK-NOT: powi
// CHECK: %[[X:.*]] = llvm.load
// CHECK-NEXT: %[[X2:.*]] = llvm.fmul %[[X]], %[[X]] : f32
// CHECK-NEXT: %[[X3:.*]] = llvm.fmul %[[X2]], %[[X]] : f32
// CHECK: llvm.store %[[X3]]
// CHECK-NOT: powi
// CHECK-LABEL: llvm.func internal @cube(
// FLAT-LABEL: llvm.func internal @cube(
// FLAT-NOT: powi
// FLAT: llvm.fmul
// FLAT: llvm.fmul
// FLAT-NOT: powi
// FLAT: llvm.return
#map = affine_map<(d0, d1) -> (d0, d1)>
func.func @cube(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %c3 = arith.constant 3 : i64
  %0 = tensor.empty() : tensor<4x8xf32>
  %1 = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]}
      ins(%x : tensor<4x8xf32>) outs(%0 : tensor<4x8xf32>) {
  ^bb0(%a: f32, %out: f32):
    %p = math.fpowi %a, %c3 : f32, i64
    linalg.yield %p : f32
  } -> tensor<4x8xf32>
  return %1 : tensor<4x8xf32>
}

// -----

// CHECK-LABEL: llvm.func @tasd_nest(
// CHECK-NOT: powi
// CHECK: %[[N:.*]] = llvm.sitofp %{{.*}} : i64 to f32
// CHECK-NEXT: llvm.intr.pow(%{{.*}}, %[[N]]) : (f32, f32) -> f32
// CHECK-NOT: powi
// CHECK-LABEL: llvm.func internal @power(
// FLAT-LABEL: llvm.func internal @power(
// FLAT-NOT: powi
// FLAT: llvm.intr.pow
// FLAT-NOT: powi
// FLAT: llvm.return
#map = affine_map<(d0, d1) -> (d0, d1)>
func.func @power(%x: tensor<4x8xf32>, %n: tensor<4x8xi64>) -> tensor<4x8xf32> {
  %0 = tensor.empty() : tensor<4x8xf32>
  %1 = linalg.generic {indexing_maps = [#map, #map, #map], iterator_types = ["parallel", "parallel"]}
      ins(%x, %n : tensor<4x8xf32>, tensor<4x8xi64>) outs(%0 : tensor<4x8xf32>) {
  ^bb0(%a: f32, %k: i64, %out: f32):
    %p = math.fpowi %a, %k : f32, i64
    linalg.yield %p : f32
  } -> tensor<4x8xf32>
  return %1 : tensor<4x8xf32>
}
