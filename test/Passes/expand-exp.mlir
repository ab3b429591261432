// tasd-cpu-expand-exp: a scalar f32 math.exp becomes range reduction
// (n = floor(x·log2e + 1/2), r = x − n·ln2 in two parts), a degree-5
// polynomial and 2^n built from exponent bits in two halves; NaN is selected
// through. No libm call remains; f64 and tensor-typed exp are left alone.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-expand-exp | FileCheck %s
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-expand-exp{ulp=1}' | FileCheck %s --check-prefix=BAD
// BAD: tasdc-opt: error: pass 'tasd-cpu-expand-exp' has no option 'ulp'

// CHECK-LABEL: func.func @softmax_body(
// CHECK-SAME: %[[X:.*]]: f32
// CHECK-NOT: math.exp
// CHECK: %[[HI:.*]] = arith.constant 8.880000e+01 : f32
// CHECK: %[[A:.*]] = arith.minnumf %[[X]], %[[HI]] : f32
// CHECK: %[[LO:.*]] = arith.constant -1.040000e+02 : f32
// CHECK: %[[C:.*]] = arith.maxnumf %[[A]], %[[LO]] : f32
// CHECK: arith.constant 1.44269502 : f32
// CHECK: %[[N:.*]] = math.floor %{{.*}} : f32
// CHECK: arith.constant 0.693359375 : f32
// CHECK: arith.constant -2.12194442E-4 : f32
// CHECK: arith.constant 1.98756912E-4 : f32
// CHECK: %[[NI:.*]] = arith.fptosi %[[N]] : f32 to i32
// CHECK: %[[H:.*]] = arith.shrsi %[[NI]], %{{.*}} : i32
// CHECK: arith.subi %[[NI]], %[[H]] : i32
// CHECK: arith.shli %{{.*}}, %{{.*}} : i32
// CHECK: arith.bitcast %{{.*}} : i32 to f32
// CHECK: arith.bitcast %{{.*}} : i32 to f32
// CHECK: %[[V:.*]] = arith.mulf
// CHECK: %[[NAN:.*]] = arith.cmpf uno, %[[X]], %[[X]] : f32
// CHECK: %[[R:.*]] = arith.select %[[NAN]], %[[X]], %[[V]] : f32
// CHECK: return %[[R]]
func.func @softmax_body(%x: f32) -> f32 {
  %r = math.exp %x : f32
  return %r : f32
}

// -----

// CHECK-LABEL: func.func @left_alone(
// CHECK: math.exp %{{.*}} : f64
// CHECK: math.exp %{{.*}} : tensor<4xf32>
// CHECK-NOT: math.floor
func.func @left_alone(%x: f64, %t: tensor<4xf32>) -> (f64, tensor<4xf32>) {
  %r = math.exp %x : f64
  %s = math.exp %t : tensor<4xf32>
  return %r, %s : f64, tensor<4xf32>
}
