// tasd-cpu-expand-erf: a scalar f32 math.erf becomes a rational polynomial on
// the input clamped to [-4, 4] (arithmetic only, no libm call); f64 and
// tensor-typed erf are left alone.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-expand-erf | FileCheck %s
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-expand-erf{fast=1}' | FileCheck %s --check-prefix=BAD
// BAD: tasdc-opt: error: pass 'tasd-cpu-expand-erf' has no option 'fast'

// CHECK-LABEL: func.func @gelu_body(
// CHECK-SAME: %[[X:.*]]: f32
// CHECK-NOT: math.erf
// CHECK: %[[FOUR:.*]] = arith.constant 4.000000e+00 : f32
// CHECK: %[[LO:.*]] = arith.minimumf %[[X]], %[[FOUR]] : f32
// CHECK: %[[MFOUR:.*]] = arith.constant -4.000000e+00 : f32
// CHECK: %[[C:.*]] = arith.maximumf %[[LO]], %[[MFOUR]] : f32
// CHECK: %[[X2:.*]] = arith.mulf %[[C]], %[[C]] : f32
// CHECK: arith.constant -2.72614237E-10 : f32
// CHECK: %[[P:.*]] = arith.mulf %{{.*}}, %[[C]] : f32
// CHECK: arith.constant -1.45660715E-5 : f32
// CHECK: %[[R:.*]] = arith.divf %[[P]], %{{.*}} : f32
// CHECK: return %[[R]]
func.func @gelu_body(%x: f32) -> f32 {
  %r = math.erf %x : f32
  return %r : f32
}

// -----

// CHECK-LABEL: func.func @left_alone(
// CHECK: math.erf %{{.*}} : f64
// CHECK: math.erf %{{.*}} : tensor<4xf32>
// CHECK-NOT: arith.divf
func.func @left_alone(%x: f64, %t: tensor<4xf32>) -> (f64, tensor<4xf32>) {
  %r = math.erf %x : f64
  %s = math.erf %t : tensor<4xf32>
  return %r, %s : f64, tensor<4xf32>
}
