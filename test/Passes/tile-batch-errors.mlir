// tasd-cpu-tile-batch: a malformed tasd.batch_operands is a user error (exit 2, one line
// naming the declaration), never a crash.
// RUN: %expect-exit 2 tasdc-opt %s --split-input-file -p tasd-cpu-tile-batch 2>&1 | FileCheck %s
// RUN: %expect-exit 2 tasdc-opt %S/Inputs/tile-batch-bad-type.mlir -p tasd-cpu-tile-batch 2>&1 | FileCheck %s --check-prefix=TYPE
// CHECK: tasdc-opt: error: @k: tasd.batch_operands position 2 is not one of its 2 operands
// TYPE: tasdc-opt: error: @k: tasd.batch_operands must be an array<i64: ...> of operand positions, got "x"
!dyn = memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
module {
  func.func private @k(!dyn, !dyn) attributes {tasd.batch_operands = array<i64: 0, 2>}
}
