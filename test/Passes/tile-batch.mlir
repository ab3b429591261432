// tasd-cpu-tile-batch: a run of per-image ops (convolution calls whose declarations name
// their batch operands, batch-parallel generics) with large buffers goes into an scf.for over
// the images; buffers only the run uses are allocated with batch 1, the others (the input,
// a buffer returned or read after the run) are viewed one image at a time by subviews.
// Left whole: batch 1, buffers under the thresholds, a generic that mixes images, a batch
// buffer passed as a filter, a run broken by an unknown op, a call typed with a static batch.
// RUN: tasdc-opt %s --split-input-file -p 'tasd-cpu-tile-batch{min-bytes=1 trigger-bytes=1}' | FileCheck %s
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-tile-batch | FileCheck %s --check-prefix=DEFAULT
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-tile-batch{min-bytes=0}' | FileCheck %s --check-prefix=BADMIN
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-tile-batch{min-bytes=64 trigger-bytes=8}' | FileCheck %s --check-prefix=BADTRIG
// BADMIN: tasdc-opt: error: pass 'tasd-cpu-tile-batch': min-bytes must be >= 1, got 0
// BADTRIG: tasdc-opt: error: pass 'tasd-cpu-tile-batch': trigger-bytes must be >= min-bytes (64), got 8

!dyn = memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
!dyn3 = memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>
// An N:M kernel (its tasd.kernel says conv2d), a dense depthwise entry (X and Y carry the
// batch, not the filter), then a kernel with a residual defined before the run; the last
// output is returned, so it stays a batch-2 buffer written through a subview.
// CHECK-LABEL: func.func @block(
// CHECK-SAME: %[[X:.*]]: memref<2x4x8x8xf32>, %[[W:.*]]: memref<6x3x3xf32>
// CHECK-DAG: %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG: %[[C1:.*]] = arith.constant 1 : index
// CHECK-DAG: %[[C2:.*]] = arith.constant 2 : index
// CHECK: %[[E:.*]] = memref.alloc() {alignment = 64 : i64} : memref<1x6x8x8xf32>
// CHECK: %[[D:.*]] = memref.alloc() {alignment = 64 : i64} : memref<1x6x8x8xf32>
// CHECK: %[[WC:.*]] = memref.cast %[[W]]
// CHECK: %[[OUT:.*]] = memref.alloc() {alignment = 64 : i64} : memref<2x4x8x8xf32>
// CHECK: scf.for %[[N:.*]] = %[[C0]] to %[[C2]] step %[[C1]] {
// CHECK: %[[XS:.*]] = memref.subview %[[X]][%[[N]], 0, 0, 0] [1, 4, 8, 8] [1, 1, 1, 1] : memref<2x4x8x8xf32> to memref<1x4x8x8xf32, strided<[256, 64, 8, 1], offset: ?>>
// CHECK: %[[XC:.*]] = memref.cast %[[XS]]
// CHECK: %[[EC:.*]] = memref.cast %[[E]]
// CHECK: func.call @tasd_kernel_0(%[[XC]], %[[EC]])
// CHECK: func.call @tasd_dense_depthwise_conv2d(%{{.*}}, %[[WC]], %{{.*}}, %{{.*}})
// CHECK: %[[OS:.*]] = memref.subview %[[OUT]][%[[N]], 0, 0, 0] [1, 4, 8, 8]
// CHECK: func.call @tasd_kernel_1(%{{.*}}, %{{.*}}, %{{.*}})
// CHECK-NEXT: }
// CHECK-NEXT: return %[[OUT]] : memref<2x4x8x8xf32>
// A batch-2 run of 512-byte buffers is under the default thresholds.
// DEFAULT-LABEL: func.func @block(
// DEFAULT-NOT: scf.for
// DEFAULT: return
module {
  func.func private @tasd_kernel_0(!dyn, !dyn) attributes {tasd.kernel = {kind = "conv2d", sparse_operand = 1 : i64}}
  func.func private @tasd_dense_depthwise_conv2d(!dyn, !dyn3, !dyn, i64, i64, i64, i64, i64, i64) attributes {tasd.batch_operands = array<i64: 0, 2>}
  func.func private @tasd_kernel_1(!dyn, !dyn, !dyn) attributes {tasd.batch_operands = array<i64: 0, 1, 2>}
  func.func @block(%x: memref<2x4x8x8xf32>, %w: memref<6x3x3xf32>) -> memref<2x4x8x8xf32> {
    %c1 = arith.constant 1 : i64
    %xc = memref.cast %x : memref<2x4x8x8xf32> to !dyn
    %e = memref.alloc() {alignment = 64 : i64} : memref<2x6x8x8xf32>
    %ec = memref.cast %e : memref<2x6x8x8xf32> to !dyn
    call @tasd_kernel_0(%xc, %ec) : (!dyn, !dyn) -> ()
    %d = memref.alloc() {alignment = 64 : i64} : memref<2x6x8x8xf32>
    %dc = memref.cast %d : memref<2x6x8x8xf32> to !dyn
    %wc = memref.cast %w : memref<6x3x3xf32> to !dyn3
    call @tasd_dense_depthwise_conv2d(%ec, %wc, %dc, %c1, %c1, %c1, %c1, %c1, %c1) : (!dyn, !dyn3, !dyn, i64, i64, i64, i64, i64, i64) -> ()
    %o = memref.alloc() {alignment = 64 : i64} : memref<2x4x8x8xf32>
    %oc = memref.cast %o : memref<2x4x8x8xf32> to !dyn
    call @tasd_kernel_1(%dc, %oc, %xc) : (!dyn, !dyn, !dyn) -> ()
    return %o : memref<2x4x8x8xf32>
  }
}

// -----

!dyn = memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#ch = affine_map<(d0, d1, d2, d3) -> (d1)>
#swap = affine_map<(d0, d1, d2, d3) -> (d1, d0, d2, d3)>
// A per-channel bias add (the bias does not use d0) joins the run; the generic reading a
// transposed copy (d0 in dim 1 of its output) ends the run and stays outside the loop.
// CHECK-LABEL: func.func @generics(
// CHECK: scf.for
// CHECK: func.call @tasd_kernel_0
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : memref<1x4x8x8xf32>, memref<4xf32>) outs(%{{.*}} : memref<1x4x8x8xf32, strided<[256, 64, 8, 1], offset: ?>>)
// CHECK: }
// CHECK: linalg.generic
// CHECK-SAME: ins(%{{.*}} : memref<2x4x8x8xf32>) outs(%{{.*}} : memref<4x2x8x8xf32>)
module {
  func.func private @tasd_kernel_0(!dyn, !dyn) attributes {tasd.batch_operands = array<i64: 0, 1>}
  func.func @generics(%x: memref<2x4x8x8xf32>, %b: memref<4xf32>) -> memref<4x2x8x8xf32> {
    %xc = memref.cast %x : memref<2x4x8x8xf32> to !dyn
    %e = memref.alloc() {alignment = 64 : i64} : memref<2x4x8x8xf32>
    %ec = memref.cast %e : memref<2x4x8x8xf32> to !dyn
    call @tasd_kernel_0(%xc, %ec) : (!dyn, !dyn) -> ()
    %f = memref.alloc() {alignment = 64 : i64} : memref<2x4x8x8xf32>
    linalg.generic {indexing_maps = [#id, #ch, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%e, %b : memref<2x4x8x8xf32>, memref<4xf32>) outs(%f : memref<2x4x8x8xf32>) {
    ^bb0(%in: f32, %bias: f32, %out: f32):
      %s = arith.addf %in, %bias : f32
      linalg.yield %s : f32
    }
    %t = memref.alloc() {alignment = 64 : i64} : memref<4x2x8x8xf32>
    linalg.generic {indexing_maps = [#id, #swap], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%f : memref<2x4x8x8xf32>) outs(%t : memref<4x2x8x8xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    }
    return %t : memref<4x2x8x8xf32>
  }
}

// -----

!dyn = memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
// Left whole: batch 1; a batch buffer passed in a non-batch position (the filter slot of
// the dense entry); a call whose type has a static batch; an unknown op between two calls.
// CHECK-LABEL: func.func @batch_one(
// CHECK-NOT: scf.for
// CHECK-LABEL: func.func @as_filter(
// CHECK-NOT: scf.for
// CHECK-LABEL: func.func @static_type(
// CHECK-NOT: scf.for
// CHECK-LABEL: func.func @broken(
// CHECK-NOT: scf.for
// CHECK: return
module {
  func.func private @k(!dyn, !dyn) attributes {tasd.batch_operands = array<i64: 0, 1>}
  func.func private @f(!dyn, !dyn, !dyn) attributes {tasd.batch_operands = array<i64: 0, 2>}
  func.func private @s(memref<2x4x8x8xf32>, memref<2x4x8x8xf32>) attributes {tasd.batch_operands = array<i64: 0, 1>}
  func.func private @opaque(memref<2x4x8x8xf32>)
  func.func @batch_one(%x: memref<1x4x8x8xf32>) -> memref<1x4x8x8xf32> {
    %xc = memref.cast %x : memref<1x4x8x8xf32> to !dyn
    %e = memref.alloc() : memref<1x4x8x8xf32>
    %ec = memref.cast %e : memref<1x4x8x8xf32> to !dyn
    call @k(%xc, %ec) : (!dyn, !dyn) -> ()
    %o = memref.alloc() : memref<1x4x8x8xf32>
    %oc = memref.cast %o : memref<1x4x8x8xf32> to !dyn
    call @k(%ec, %oc) : (!dyn, !dyn) -> ()
    return %o : memref<1x4x8x8xf32>
  }
  func.func @as_filter(%x: memref<2x4x8x8xf32>) -> memref<2x4x8x8xf32> {
    %xc = memref.cast %x : memref<2x4x8x8xf32> to !dyn
    %e = memref.alloc() : memref<2x4x8x8xf32>
    %ec = memref.cast %e : memref<2x4x8x8xf32> to !dyn
    call @k(%xc, %ec) : (!dyn, !dyn) -> ()
    %o = memref.alloc() : memref<2x4x8x8xf32>
    %oc = memref.cast %o : memref<2x4x8x8xf32> to !dyn
    call @f(%xc, %ec, %oc) : (!dyn, !dyn, !dyn) -> ()
    return %o : memref<2x4x8x8xf32>
  }
  func.func @static_type(%x: memref<2x4x8x8xf32>) -> memref<2x4x8x8xf32> {
    %e = memref.alloc() : memref<2x4x8x8xf32>
    call @s(%x, %e) : (memref<2x4x8x8xf32>, memref<2x4x8x8xf32>) -> ()
    %o = memref.alloc() : memref<2x4x8x8xf32>
    call @s(%e, %o) : (memref<2x4x8x8xf32>, memref<2x4x8x8xf32>) -> ()
    return %o : memref<2x4x8x8xf32>
  }
  func.func @broken(%x: memref<2x4x8x8xf32>) -> memref<2x4x8x8xf32> {
    %xc = memref.cast %x : memref<2x4x8x8xf32> to !dyn
    %e = memref.alloc() : memref<2x4x8x8xf32>
    %ec = memref.cast %e : memref<2x4x8x8xf32> to !dyn
    call @k(%xc, %ec) : (!dyn, !dyn) -> ()
    call @opaque(%e) : (memref<2x4x8x8xf32>) -> ()
    %o = memref.alloc() : memref<2x4x8x8xf32>
    %oc = memref.cast %o : memref<2x4x8x8xf32> to !dyn
    call @k(%ec, %oc) : (!dyn, !dyn) -> ()
    return %o : memref<2x4x8x8xf32>
  }
}

