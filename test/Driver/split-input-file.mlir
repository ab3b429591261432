// Chunks are processed independently and re-joined with the separator.
// RUN: tasdc-opt %s --split-input-file | FileCheck %s

// CHECK-LABEL: func.func @first
// CHECK: // -----
// CHECK-LABEL: func.func @second
func.func @first() {
  return
}

// -----

func.func @second() {
  return
}
