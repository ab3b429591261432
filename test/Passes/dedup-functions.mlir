// tasd-cpu-dedup-functions keeps one copy of private functions that print
// the same once renamed (the first in module order) and makes every call of
// a copy call it; public functions, declarations, functions that differ in
// one constant or type, and functions named by a func.constant are kept.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-dedup-functions | FileCheck %s
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-dedup-functions{all=1}' | FileCheck %s --check-prefix=BAD
// BAD: tasdc-opt: error: pass 'tasd-cpu-dedup-functions' has no option 'all' (options: none)

// CHECK-LABEL: func.func private @add_a(
// CHECK-NOT: func.func private @add_b
// CHECK-LABEL: func.func private @add_c(
// CHECK: arith.constant 8 : index
// CHECK-LABEL: func.func @main
// CHECK-NEXT: call @add_a(
// CHECK-NEXT: call @add_a(
// CHECK-NEXT: call @add_c(
// CHECK-NEXT: call @add_a(
func.func private @add_a(%a: memref<8xf32>, %s: f32) attributes {llvm.no_inline} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  scf.for %i = %c0 to %c4 step %c1 {
    %x = memref.load %a[%i] : memref<8xf32>
    %y = arith.addf %x, %s : f32
    memref.store %y, %a[%i] : memref<8xf32>
  }
  return
}
// Same body under another name and other SSA names: merged.
func.func private @add_b(%buf: memref<8xf32>, %t: f32) attributes {llvm.no_inline} {
  %zero = arith.constant 0 : index
  %one = arith.constant 1 : index
  %four = arith.constant 4 : index
  scf.for %k = %zero to %four step %one {
    %v = memref.load %buf[%k] : memref<8xf32>
    %w = arith.addf %v, %t : f32
    memref.store %w, %buf[%k] : memref<8xf32>
  }
  return
}
// One trip count differs: kept.
func.func private @add_c(%a: memref<8xf32>, %s: f32) attributes {llvm.no_inline} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  scf.for %i = %c0 to %c8 step %c1 {
    %x = memref.load %a[%i] : memref<8xf32>
    %y = arith.addf %x, %s : f32
    memref.store %y, %a[%i] : memref<8xf32>
  }
  return
}
// A third copy after a different function: merged too.
func.func private @add_d(%a: memref<8xf32>, %s: f32) attributes {llvm.no_inline} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  scf.for %i = %c0 to %c4 step %c1 {
    %x = memref.load %a[%i] : memref<8xf32>
    %y = arith.addf %x, %s : f32
    memref.store %y, %a[%i] : memref<8xf32>
  }
  return
}
func.func @main(%a: memref<8xf32>, %s: f32) {
  call @add_a(%a, %s) : (memref<8xf32>, f32) -> ()
  call @add_b(%a, %s) : (memref<8xf32>, f32) -> ()
  call @add_c(%a, %s) : (memref<8xf32>, f32) -> ()
  call @add_d(%a, %s) : (memref<8xf32>, f32) -> ()
  return
}

// -----

// Public copies, declarations and argument types that differ are kept.
// CHECK-LABEL: func.func private @ext(memref<4xf32>)
// CHECK-LABEL: func.func private @ext2(memref<4xf32>)
// CHECK-LABEL: func.func @pub_a(
// CHECK-LABEL: func.func @pub_b(
// CHECK-LABEL: func.func private @neg_f32(
// CHECK-LABEL: func.func private @neg_f64(
// CHECK-LABEL: func.func @use
// CHECK-NEXT: call @neg_f32(
// CHECK-NEXT: call @neg_f64(
func.func private @ext(memref<4xf32>)
func.func private @ext2(memref<4xf32>)
func.func @pub_a(%x: f32) -> f32 {
  %y = arith.negf %x : f32
  return %y : f32
}
func.func @pub_b(%x: f32) -> f32 {
  %y = arith.negf %x : f32
  return %y : f32
}
func.func private @neg_f32(%x: f32) -> f32 {
  %y = arith.negf %x : f32
  return %y : f32
}
func.func private @neg_f64(%x: f64) -> f64 {
  %y = arith.negf %x : f64
  return %y : f64
}
func.func @use(%x: f32, %z: f64) {
  %a = call @neg_f32(%x) : (f32) -> f32
  %b = call @neg_f64(%z) : (f64) -> f64
  return
}

// -----

// A function used as a value (func.constant) keeps its name and its calls.
// CHECK-LABEL: func.func private @sq_a(
// CHECK-LABEL: func.func private @sq_b(
// CHECK-LABEL: func.func @take
// CHECK: constant @sq_b
// CHECK: call @sq_b(
func.func private @sq_a(%x: f32) -> f32 {
  %y = arith.mulf %x, %x : f32
  return %y : f32
}
func.func private @sq_b(%x: f32) -> f32 {
  %y = arith.mulf %x, %x : f32
  return %y : f32
}
func.func @take(%x: f32) -> ((f32) -> f32) {
  %f = func.constant @sq_b : (f32) -> f32
  %y = call @sq_b(%x) : (f32) -> f32
  return %f : (f32) -> f32
}
