// tasd-fold-weight-gathers: a contraction's weight produced by a linalg.generic
// that only gathers elements of a constant (linalg.index, integer add/sub/mul,
// tensor.extract; torch-mlir's ConvTranspose2d filter, transposed and flipped)
// becomes a constant with those elements; the generic, its fill and the
// source constant are erased when unused. Anything else is left alone.
// RUN: tasdc-opt %s --split-input-file -p tasd-fold-weight-gathers | FileCheck %s
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-fold-weight-gathers{all=1}' | FileCheck %s --check-prefix=BAD
// BAD: tasdc-opt: error: pass 'tasd-fold-weight-gathers' has no option 'all'

// W[i, o, h, w] = 10*i + 4*o + 2*h + w; F[o, i, h, w] = W[i, o, 1-h, 1-w]:
// F[0, 0] = [[3, 2], [1, 0]], F[0, 1] = [[13, 12], [11, 10]], F[1, 0] = [[7, 6], [5, 4]],
// F[1, 1] = [[17, 16], [15, 14]] (the blob: a 4-byte alignment header, then f32 little-endian).
// CHECK-LABEL: func.func @transposed_conv(
// CHECK-NOT: linalg.generic
// CHECK-NOT: tensor.extract
// CHECK: %[[F:.*]] = arith.constant dense_resource<tasd_gathered_weight_0> : tensor<2x2x2x2xf32>
// CHECK: linalg.conv_2d_nchw_fchw {{.*}} ins(%{{.*}}, %[[F]] :
// CHECK: tasd_gathered_weight_0: "0x0400000000004040000000400000803F00000000000050410000404100003041000020410000E0400000C0400000A0400000804000008841000080410000704100006041"
func.func @transposed_conv(%x: tensor<1x2x3x3xf32>) -> tensor<1x2x2x2xf32> {
  %w = arith.constant dense<[[[[0.0, 1.0], [2.0, 3.0]], [[4.0, 5.0], [6.0, 7.0]]],
                             [[[10.0, 11.0], [12.0, 13.0]], [[14.0, 15.0], [16.0, 17.0]]]]> : tensor<2x2x2x2xf32>
  %c1 = arith.constant 1 : index
  %cst = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x2x2x2xf32>
  %fill = linalg.fill ins(%cst : f32) outs(%e : tensor<2x2x2x2xf32>) -> tensor<2x2x2x2xf32>
  %f = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>],
                       iterator_types = ["parallel", "parallel", "parallel", "parallel"]} outs(%fill : tensor<2x2x2x2xf32>) {
  ^bb0(%out: f32):
    %o = linalg.index 0 : index
    %i = linalg.index 1 : index
    %h = linalg.index 2 : index
    %w2 = linalg.index 3 : index
    %rh = arith.subi %c1, %h : index
    %rw = arith.subi %c1, %w2 : index
    %v = tensor.extract %w[%i, %o, %rh, %rw] : tensor<2x2x2x2xf32>
    linalg.yield %v : f32
  } -> tensor<2x2x2x2xf32>
  %ye = tensor.empty() : tensor<1x2x2x2xf32>
  %y0 = linalg.fill ins(%cst : f32) outs(%ye : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>}
       ins(%x, %f : tensor<1x2x3x3xf32>, tensor<2x2x2x2xf32>) outs(%y0 : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  return %y : tensor<1x2x2x2xf32>
}

// -----

// ConvTranspose1d: the gathered filter F[o, i, k] = W[i, o, 1-k] reaches the
// convolution through tensor.expand_shape (made 4-D); the gather is folded and
// the reshape kept. W[i, o, k] = 4*i + 2*o + k: F = [[[1, 0], [5, 4]], [[3, 2], [7, 6]]].
// CHECK-LABEL: func.func @transposed_conv1d(
// CHECK-NOT: linalg.generic
// CHECK: %[[F:.*]] = arith.constant dense_resource<tasd_gathered_weight_0> : tensor<2x2x2xf32>
// CHECK: %[[F4:.*]] = tensor.expand_shape %[[F]]
// CHECK: linalg.conv_2d_nchw_fchw {{.*}} ins(%{{.*}}, %[[F4]] :
// CHECK: tasd_gathered_weight_0: "0x040000000000803F000000000000A0400000804000004040000000400000E0400000C040"
func.func @transposed_conv1d(%x: tensor<1x2x1x3xf32>) -> tensor<1x2x1x2xf32> {
  %w = arith.constant dense<[[[0.0, 1.0], [2.0, 3.0]], [[4.0, 5.0], [6.0, 7.0]]]> : tensor<2x2x2xf32>
  %c1 = arith.constant 1 : index
  %cst = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x2x2xf32>
  %fill = linalg.fill ins(%cst : f32) outs(%e : tensor<2x2x2xf32>) -> tensor<2x2x2xf32>
  %f = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>],
                       iterator_types = ["parallel", "parallel", "parallel"]} outs(%fill : tensor<2x2x2xf32>) {
  ^bb0(%out: f32):
    %o = linalg.index 0 : index
    %i = linalg.index 1 : index
    %k = linalg.index 2 : index
    %rk = arith.subi %c1, %k : index
    %v = tensor.extract %w[%i, %o, %rk] : tensor<2x2x2xf32>
    linalg.yield %v : f32
  } -> tensor<2x2x2xf32>
  %f4 = tensor.expand_shape %f [[0], [1], [2, 3]] output_shape [2, 2, 1, 2] : tensor<2x2x2xf32> into tensor<2x2x1x2xf32>
  %ye = tensor.empty() : tensor<1x2x1x2xf32>
  %y0 = linalg.fill ins(%cst : f32) outs(%ye : tensor<1x2x1x2xf32>) -> tensor<1x2x1x2xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>}
       ins(%x, %f4 : tensor<1x2x1x3xf32>, tensor<2x2x1x2xf32>) outs(%y0 : tensor<1x2x1x2xf32>) -> tensor<1x2x1x2xf32>
  return %y : tensor<1x2x1x2xf32>
}

// -----

// Not folded: the gather reads a run-time tensor; the generic reads its init
// (an accumulation, not a gather); an index that would fall outside the source.
// CHECK-LABEL: func.func @not_folded(
// CHECK-COUNT-3: tensor.extract
// CHECK-NOT: tasd_gathered_weight
func.func @not_folded(%x: tensor<2x4xf32>, %r: tensor<4x2xf32>) -> (tensor<2x2xf32>, tensor<2x2xf32>, tensor<2x2xf32>) {
  %w = arith.constant dense<1.0> : tensor<2x4xf32>
  %c3 = arith.constant 3 : index
  %cst = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x2xf32>
  %fill = linalg.fill ins(%cst : f32) outs(%e : tensor<4x2xf32>) -> tensor<4x2xf32>
  %runtime = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} outs(%fill : tensor<4x2xf32>) {
  ^bb0(%out: f32):
    %a = linalg.index 0 : index
    %b = linalg.index 1 : index
    %v = tensor.extract %r[%a, %b] : tensor<4x2xf32>
    linalg.yield %v : f32
  } -> tensor<4x2xf32>
  %reads_init = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} outs(%fill : tensor<4x2xf32>) {
  ^bb0(%out: f32):
    %a = linalg.index 0 : index
    %b = linalg.index 1 : index
    %v = tensor.extract %w[%b, %a] : tensor<2x4xf32>
    %s = arith.addf %v, %out : f32
    linalg.yield %s : f32
  } -> tensor<4x2xf32>
  %outside = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} outs(%fill : tensor<4x2xf32>) {
  ^bb0(%out: f32):
    %a = linalg.index 0 : index
    %b = linalg.index 1 : index
    %bb = arith.addi %b, %c3 : index
    %v = tensor.extract %w[%bb, %a] : tensor<2x4xf32>
    linalg.yield %v : f32
  } -> tensor<4x2xf32>
  %ye = tensor.empty() : tensor<2x2xf32>
  %y0 = linalg.fill ins(%cst : f32) outs(%ye : tensor<2x2xf32>) -> tensor<2x2xf32>
  %y1 = linalg.matmul ins(%x, %runtime : tensor<2x4xf32>, tensor<4x2xf32>) outs(%y0 : tensor<2x2xf32>) -> tensor<2x2xf32>
  %y2 = linalg.matmul ins(%x, %reads_init : tensor<2x4xf32>, tensor<4x2xf32>) outs(%y0 : tensor<2x2xf32>) -> tensor<2x2xf32>
  %y3 = linalg.matmul ins(%x, %outside : tensor<2x4xf32>, tensor<4x2xf32>) outs(%y0 : tensor<2x2xf32>) -> tensor<2x2xf32>
  return %y1, %y2, %y3 : tensor<2x2xf32>, tensor<2x2xf32>, tensor<2x2xf32>
}
