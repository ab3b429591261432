// tasd-cpu-keep-inner-loops: an innermost scalar scf.for with constant bounds,
// at least min-trip (16) iterations, whose stores write along it (its
// induction variable indexes their unit-stride last dim) or do not use it,
// gets llvm.loop_annotation "unroll disable"; on LLVM the annotation that
// convert-scf-to-cf forwarded to the latch branch becomes the branch's own
// loop_annotation (the one the translation to LLVM IR reads).
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-keep-inner-loops | FileCheck %s
// RUN: tasdc-opt %s --split-input-file -p 'tasd-cpu-keep-inner-loops{min-trip=64}' | FileCheck %s --check-prefix=MIN64
// RUN: tasdc-opt %s --split-input-file -p 'tasd-cpu-keep-inner-loops,convert-scf-to-cf,expand-strided-metadata,convert-to-llvm,reconcile-unrealized-casts,tasd-cpu-keep-inner-loops' | FileCheck %s --check-prefix=LLVM
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-keep-inner-loops{min-trip=1}' | FileCheck %s --check-prefix=BAD
// BAD: tasdc-opt: error: tasd-cpu-keep-inner-loops: min-trip must be at least 2, got 1

// A row of 32 written along the loop: the inner loop is marked, the outer not.
// CHECK-LABEL: func.func @rows(
// CHECK: scf.for
// CHECK: scf.for
// CHECK: memref.store
// CHECK-NEXT: } {llvm.loop_annotation = #{{.*}}}
// CHECK-NEXT: }{{$}}
// MIN64-LABEL: func.func @rows(
// MIN64-NOT: llvm.loop_annotation
// MIN64: return
// LLVM-LABEL: llvm.func @rows(
// LLVM: llvm.br ^{{.*}} {loop_annotation = #{{.*}}}
// LLVM-NOT: {llvm.loop_annotation
// LLVM: llvm.return
func.func @rows(%a: memref<8x32xf32>, %b: memref<32xf32>, %o: memref<8x32xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %c32 = arith.constant 32 : index
  scf.for %i = %c0 to %c8 step %c1 {
    scf.for %j = %c0 to %c32 step %c1 {
      %x = memref.load %a[%i, %j] : memref<8x32xf32>
      %y = memref.load %b[%j] : memref<32xf32>
      %s = arith.addf %x, %y : f32
      memref.store %s, %o[%i, %j] : memref<8x32xf32>
    }
  }
  return
}

// -----

// A row max: the accumulator's store does not use the inner variable: marked.
// CHECK-LABEL: func.func @row_max(
// CHECK: memref.store
// CHECK-NEXT: } {llvm.loop_annotation = #{{.*}}}
// MIN64-LABEL: func.func @row_max(
// MIN64: } {llvm.loop_annotation
func.func @row_max(%a: memref<8x64xf32>, %o: memref<8x1xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %c64 = arith.constant 64 : index
  scf.for %i = %c0 to %c8 step %c1 {
    scf.for %j = %c0 to %c64 step %c1 {
      %x = memref.load %a[%i, %j] : memref<8x64xf32>
      %m = memref.load %o[%i, %c0] : memref<8x1xf32>
      %r = arith.maximumf %x, %m : f32
      memref.store %r, %o[%i, %c0] : memref<8x1xf32>
    }
  }
  return
}

// -----

// Not marked: 14 iterations (below min-trip), a transpose written column-wise
// (the inner variable indexes the stored row, not the column), a store into a
// column of stride 2, bounds that are not constants, and a loop whose body
// holds vectors.
// CHECK-LABEL: func.func @not_marked(
// CHECK-NOT: llvm.loop_annotation
// CHECK: return
func.func @not_marked(%a: memref<8x32xf32>, %t: memref<32x8xf32>, %s: memref<8x32xf32, strided<[64, 2]>>,
                      %n: index, %v: memref<8x32xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %c14 = arith.constant 14 : index
  %c16 = arith.constant 16 : index
  %c32 = arith.constant 32 : index
  %f0 = arith.constant 0.0 : f32
  scf.for %i = %c0 to %c8 step %c1 {
    scf.for %j = %c0 to %c14 step %c1 {
      %x = memref.load %a[%i, %j] : memref<8x32xf32>
      memref.store %x, %a[%i, %j] : memref<8x32xf32>
    }
    scf.for %j = %c0 to %c32 step %c1 {
      %x = memref.load %a[%i, %j] : memref<8x32xf32>
      memref.store %x, %t[%j, %i] : memref<32x8xf32>
    }
    scf.for %j = %c0 to %c32 step %c1 {
      %x = memref.load %a[%i, %j] : memref<8x32xf32>
      memref.store %x, %s[%i, %j] : memref<8x32xf32, strided<[64, 2]>>
    }
    scf.for %j = %c0 to %n step %c1 {
      %x = memref.load %a[%i, %j] : memref<8x32xf32>
      memref.store %x, %a[%i, %j] : memref<8x32xf32>
    }
    scf.for %j = %c0 to %c32 step %c16 {
      %x = vector.transfer_read %a[%i, %j], %f0 : memref<8x32xf32>, vector<16xf32>
      vector.transfer_write %x, %v[%i, %j] : vector<16xf32>, memref<8x32xf32>
    }
  }
  return
}
