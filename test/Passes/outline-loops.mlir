// tasd-cpu-outline-loops moves every loop nest at the top level of a
// function into its own private function marked llvm.no_inline and calls
// it; nested loops stay inside their nest, straight-line code stays put,
// declarations are untouched. A value the nest uses that its call passes as
// an arith.constant is a clone of that constant inside the new function (so
// LLVM still sees it: e.g. math.fpowi's exponent); the argument stays, unused.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-outline-loops | FileCheck %s
// RUN: tasdc-opt %s --split-input-file -p 'tasd-cpu-outline-loops{prefix=part}' | FileCheck %s --check-prefix=PREFIX
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-outline-loops{prefix=1x}' | FileCheck %s --check-prefix=BAD
// BAD: tasdc-opt: error: pass 'tasd-cpu-outline-loops': prefix must be an identifier, got '1x'

// The new functions come first in the module.
// CHECK-LABEL: func.func private @tasd_nest(
// CHECK-SAME: %{{.*}}: memref<4x8xf32>, %[[ONE_ARG:.*]]: f32,
// CHECK-SAME: llvm.no_inline
// CHECK: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK: scf.for
// CHECK: scf.for
// CHECK: arith.addf %{{.*}}, %[[ONE]] : f32
// CHECK-LABEL: func.func private @tasd_nest_0(
// CHECK-SAME: llvm.no_inline
// CHECK: arith.mulf
// CHECK-LABEL: func.func @two_nests
// CHECK-NOT: scf.for
// CHECK: call @tasd_nest(
// CHECK-NOT: scf.for
// CHECK: memref.store
// CHECK-NOT: scf.for
// CHECK: call @tasd_nest_0(
// CHECK-NOT: scf.for
// CHECK: return
// CHECK-NOT: tasd.outline
// PREFIX: call @part(
// PREFIX: call @part_0(
func.func @two_nests(%a: memref<4x8xf32>, %b: memref<4x8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c8 = arith.constant 8 : index
  %one = arith.constant 1.0 : f32
  scf.for %i = %c0 to %c4 step %c1 {
    scf.for %j = %c0 to %c8 step %c1 {
      %x = memref.load %a[%i, %j] : memref<4x8xf32>
      %y = arith.addf %x, %one : f32
      memref.store %y, %b[%i, %j] : memref<4x8xf32>
    }
  }
  memref.store %one, %a[%c0, %c0] : memref<4x8xf32>
  scf.for %i = %c0 to %c4 step %c1 {
    %x = memref.load %b[%i, %c0] : memref<4x8xf32>
    %y = arith.mulf %x, %x : f32
    memref.store %y, %a[%i, %c0] : memref<4x8xf32>
  }
  return
}

// -----

// A scalar that is not a constant stays an argument.
// CHECK-LABEL: func.func private @tasd_nest(
// CHECK-SAME: %[[S:arg[0-9]+]]: f32
// CHECK-NOT: arith.constant {{.*}} : f32
// CHECK: arith.mulf %{{.*}}, %[[S]] : f32
// CHECK-LABEL: func.func @scaled
func.func @scaled(%a: memref<4xf32>, %s: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  scf.for %i = %c0 to %c4 step %c1 {
    %x = memref.load %a[%i] : memref<4xf32>
    %y = arith.mulf %x, %s : f32
    memref.store %y, %a[%i] : memref<4xf32>
  }
  return
}

// -----

// CHECK-LABEL: func.func private @kernel(memref<?xf32>)
// CHECK-LABEL: func.func @no_loops
// CHECK-NEXT: call @kernel
// CHECK-NEXT: return
// CHECK-NOT: func.func private @tasd_nest
func.func private @kernel(memref<?xf32>)
func.func @no_loops(%a: memref<?xf32>) {
  call @kernel(%a) : (memref<?xf32>) -> ()
  return
}
