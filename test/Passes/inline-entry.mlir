// tasd-cpu-inline-entry gives a public llvm.func whose C-interface wrapper
// @_mlir_ciface_<name> is defined, and which only that wrapper calls,
// alwaysinline (replacing a noinline) and internal linkage; the wrapper
// stays the entry point. Functions without a wrapper, called from elsewhere
// or already internal are left alone.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-inline-entry | FileCheck %s
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-inline-entry{entry=main}' | FileCheck %s --check-prefix=BAD
// BAD: tasdc-opt: error: pass 'tasd-cpu-inline-entry' has no option 'entry' (options: none)

// CHECK-LABEL: llvm.func internal @main(
// CHECK-SAME: passthrough = ["alwaysinline"]
// CHECK-LABEL: llvm.func @_mlir_ciface_main(
// CHECK-NOT: alwaysinline
// CHECK: llvm.call @main(
llvm.func @main(%arg0: !llvm.ptr, %arg1: !llvm.ptr, %arg2: i64) -> i64 attributes {llvm.emit_c_interface, passthrough = ["noinline"]} {
  llvm.return %arg2 : i64
}
llvm.func @_mlir_ciface_main(%arg0: !llvm.ptr) -> i64 attributes {llvm.emit_c_interface} {
  %0 = llvm.load %arg0 : !llvm.ptr -> !llvm.struct<(ptr, ptr, i64)>
  %1 = llvm.extractvalue %0[0] : !llvm.struct<(ptr, ptr, i64)>
  %2 = llvm.extractvalue %0[1] : !llvm.struct<(ptr, ptr, i64)>
  %3 = llvm.extractvalue %0[2] : !llvm.struct<(ptr, ptr, i64)>
  %4 = llvm.call @main(%1, %2, %3) : (!llvm.ptr, !llvm.ptr, i64) -> i64
  llvm.return %4 : i64
}

// -----

// CHECK-LABEL: llvm.func @shared(
// CHECK-NOT: alwaysinline
// CHECK-LABEL: llvm.func @_mlir_ciface_shared(
// CHECK-LABEL: llvm.func @other(
// CHECK-LABEL: llvm.func @lonely(
// CHECK-NOT: alwaysinline
// CHECK-LABEL: llvm.func internal @hidden(
// CHECK-NOT: alwaysinline
llvm.func @shared(%arg0: i64) -> i64 {
  llvm.return %arg0 : i64
}
llvm.func @_mlir_ciface_shared(%arg0: i64) -> i64 {
  %0 = llvm.call @shared(%arg0) : (i64) -> i64
  llvm.return %0 : i64
}
llvm.func @other(%arg0: i64) -> i64 {
  %0 = llvm.call @shared(%arg0) : (i64) -> i64
  llvm.return %0 : i64
}
llvm.func @lonely(%arg0: i64) -> i64 {
  llvm.return %arg0 : i64
}
llvm.func internal @hidden(%arg0: i64) -> i64 {
  llvm.return %arg0 : i64
}
llvm.func @_mlir_ciface_hidden(%arg0: i64) -> i64 {
  %0 = llvm.call @hidden(%arg0) : (i64) -> i64
  llvm.return %0 : i64
}
