// tasd-cpu-mark-noalias, on memrefs: a private function's memref argument is
// recorded (tasd.noalias_args: the LLVM positions of its descriptor's
// allocated and aligned pointers) when at every call its buffer is no other
// operand's buffer (traced through views to an alloc, a global, or a caller
// argument; writable caller arguments count as one buffer, read-only ones as
// their own). On llvm.func the record becomes llvm.noalias.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-mark-noalias | FileCheck %s
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-mark-noalias{all=1}' | FileCheck %s --check-prefix=BAD
// BAD: tasdc-opt: error: pass 'tasd-cpu-mark-noalias' has no option 'all'

// Two fresh allocations: both marked. memref<8xf32> expands to 5 LLVM
// arguments (allocated, aligned, offset, size, stride), the index to 1.
// CHECK-LABEL: func.func private @distinct(
// CHECK-SAME: tasd.noalias_args = array<i64: 0, 1, 5, 6>
func.func private @distinct(%a: memref<8xf32>, %b: memref<8xf32>, %i: index) {
  return
}
func.func @caller() {
  %c0 = arith.constant 0 : index
  %a = memref.alloc() : memref<8xf32>
  %b = memref.alloc() : memref<8xf32>
  func.call @distinct(%a, %b, %c0) : (memref<8xf32>, memref<8xf32>, index) -> ()
  memref.dealloc %a : memref<8xf32>
  memref.dealloc %b : memref<8xf32>
  return
}

// -----

// A view of the same allocation, and two writable caller arguments (which
// may be one array): nothing marked. A read-only (bound) argument and a
// fresh allocation beside a writable argument: those two are marked, the
// writable one too (it is the only writable one at that call); memref<2x4xf32>
// expands to 7 LLVM arguments.
// CHECK-LABEL: func.func private @same_buffer(
// CHECK-NOT: tasd.noalias_args
// CHECK-LABEL: func.func private @two_inputs(
// CHECK-NOT: tasd.noalias_args
// CHECK-LABEL: func.func private @bound(
// CHECK-SAME: tasd.noalias_args = array<i64: 0, 1, 7, 8, 12, 13>
func.func private @same_buffer(%a: memref<2x4xf32>, %b: memref<8xf32>) {
  return
}
func.func private @two_inputs(%a: memref<8xf32>, %b: memref<8xf32>) {
  return
}
func.func private @bound(%w: memref<2x4xf32>, %x: memref<8xf32>, %y: memref<8xf32>) {
  return
}
func.func @main(%x: memref<8xf32>, %x2: memref<8xf32>, %w: memref<2x4xf32> {bufferization.writable = false}) {
  %a = memref.alloc() : memref<8xf32>
  %v = memref.expand_shape %a [[0, 1]] output_shape [2, 4] : memref<8xf32> into memref<2x4xf32>
  func.call @same_buffer(%v, %a) : (memref<2x4xf32>, memref<8xf32>) -> ()
  func.call @two_inputs(%x, %x2) : (memref<8xf32>, memref<8xf32>) -> ()
  func.call @bound(%w, %x, %a) : (memref<2x4xf32>, memref<8xf32>, memref<8xf32>) -> ()
  memref.dealloc %a : memref<8xf32>
  return
}

// -----

// Marked only where every call allows it: the second call passes one
// buffer twice.
// CHECK-LABEL: func.func private @twice(
// CHECK-NOT: tasd.noalias_args
func.func private @twice(%a: memref<8xf32>, %b: memref<8xf32>) {
  return
}
func.func @caller2() {
  %a = memref.alloc() : memref<8xf32>
  %b = memref.alloc() : memref<8xf32>
  func.call @twice(%a, %b) : (memref<8xf32>, memref<8xf32>) -> ()
  func.call @twice(%a, %a) : (memref<8xf32>, memref<8xf32>) -> ()
  memref.dealloc %a : memref<8xf32>
  memref.dealloc %b : memref<8xf32>
  return
}

// -----

// After the LLVM conversion: the recorded pointers get llvm.noalias, the
// record is removed, other arguments are unchanged.
// CHECK-LABEL: llvm.func @nest(
// CHECK-SAME: %{{.*}}: !llvm.ptr {llvm.noalias}, %{{.*}}: !llvm.ptr {llvm.noalias}, %{{.*}}: i64, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr)
// CHECK-NOT: tasd.noalias_args
llvm.func @nest(%p: !llvm.ptr, %q: !llvm.ptr, %n: i64, %r: !llvm.ptr, %s: !llvm.ptr) attributes {sym_visibility = "private", tasd.noalias_args = array<i64: 0, 1>} {
  llvm.return
}

// -----

// A reduction nest (the store into %acc leaves out %j, the loop it sums
// over) is not marked: LLVM would keep the accumulator in a register and
// vectorize across rows with gathers. The elementwise nest is marked.
// CHECK-LABEL: func.func private @row_sum(
// CHECK-NOT: tasd.noalias_args
// CHECK-LABEL: func.func private @scale(
// CHECK-SAME: tasd.noalias_args = array<i64: 0, 1, 7, 8>
func.func private @row_sum(%x: memref<4x8xf32>, %acc: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c8 = arith.constant 8 : index
  scf.for %i = %c0 to %c4 step %c1 {
    scf.for %j = %c0 to %c8 step %c1 {
      %v = memref.load %x[%i, %j] : memref<4x8xf32>
      %a = memref.load %acc[%i] : memref<4xf32>
      %s = arith.addf %v, %a : f32
      memref.store %s, %acc[%i] : memref<4xf32>
    }
  }
  return
}
func.func private @scale(%x: memref<4x8xf32>, %y: memref<4x8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c8 = arith.constant 8 : index
  scf.for %i = %c0 to %c4 step %c1 {
    scf.for %j = %c0 to %c8 step %c1 {
      %v = memref.load %x[%i, %j] : memref<4x8xf32>
      %s = arith.addf %v, %v : f32
      memref.store %s, %y[%i, %j] : memref<4x8xf32>
    }
  }
  return
}
func.func @caller3() {
  %x = memref.alloc() : memref<4x8xf32>
  %y = memref.alloc() : memref<4x8xf32>
  %acc = memref.alloc() : memref<4xf32>
  func.call @row_sum(%x, %acc) : (memref<4x8xf32>, memref<4xf32>) -> ()
  func.call @scale(%x, %y) : (memref<4x8xf32>, memref<4x8xf32>) -> ()
  memref.dealloc %x : memref<4x8xf32>
  memref.dealloc %y : memref<4x8xf32>
  memref.dealloc %acc : memref<4xf32>
  return
}
