// tasd-cpu-fold-batch-norm: a per-output-channel affine chain after a
// convolution with a constant filter (torch-mlir's inference BatchNorm,
// with 1/sqrt(var + eps) computed by linalg.generic ops over constants) is
// folded into the filter and a broadcast bias init; what follows the chain
// (ReLU) stays. Chains with run-time per-channel values, a filter that is
// not a constant, or a per-element operand are left alone.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-fold-batch-norm | FileCheck %s
// RUN: tasdc-opt %s --split-input-file -p 'tasd-cpu-fold-batch-norm{max-chain=1}' | FileCheck %s --check-prefix=ONE
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-fold-batch-norm{max-chain=0}' | FileCheck %s --check-prefix=BAD
// BAD: tasdc-opt: error: pass 'tasd-cpu-fold-batch-norm': max-chain must be >= 1, got 0

#v = affine_map<(d0) -> (d0)>
#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#ch = affine_map<(d0, d1, d2, d3) -> (d1, 0, 0)>
#sc = affine_map<(d0, d1, d2, d3) -> ()>
// Filter 1 everywhere, mean 1, var 3 (+ eps 1 -> 1/2), gamma 4, beta 0.5:
// y = (conv - 1) * 0.5 * 4 + 0.5 = 2 * conv - 1.5.
// CHECK-LABEL: func.func @batch_norm(
// CHECK-SAME: %[[X:.*]]: tensor<1x2x4x4xf32>
// CHECK-DAG: %[[W:.*]] = arith.constant dense<2.000000e+00> : tensor<2x2x3x3xf32>
// CHECK-DAG: %[[B:.*]] = arith.constant dense<-1.500000e+00> : tensor<2xf32>
// CHECK: %[[I:.*]] = linalg.broadcast ins(%[[B]] : tensor<2xf32>) outs(%{{.*}} : tensor<1x2x2x2xf32>) dimensions = [0, 2, 3]
// CHECK: %[[C:.*]] = linalg.conv_2d_nchw_fchw {{.*}} ins(%[[X]], %[[W]] : tensor<1x2x4x4xf32>, tensor<2x2x3x3xf32>) outs(%[[I]] : tensor<1x2x2x2xf32>)
// CHECK-NEXT: %[[R:.*]] = linalg.generic {{.*}} ins(%[[C]] : tensor<1x2x2x2xf32>)
// CHECK: arith.maximumf
// CHECK-NOT: math.sqrt
// CHECK-NOT: arith.subf
// CHECK: return %[[R]]
// With max-chain=1 only the subtraction is folded (bias -1); the rest stays,
// with 1/sqrt(var + eps) = 0.5 as a constant (second rule).
// ONE-LABEL: func.func @batch_norm(
// ONE-DAG: arith.constant dense<-1.000000e+00> : tensor<2xf32>
// ONE-DAG: arith.constant dense<5.000000e-01> : tensor<2x1x1xf32>
// ONE-NOT: math.sqrt
// ONE: arith.mulf
// ONE: arith.mulf
// ONE: arith.addf
func.func @batch_norm(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x2x2xf32> {
  %zero = arith.constant 0.0 : f32
  %one = arith.constant 1.0 : f32
  %eps = arith.constant 1.0 : f64
  %w = arith.constant dense<1.0> : tensor<2x2x3x3xf32>
  %mean = arith.constant dense<1.0> : tensor<2xf32>
  %var = arith.constant dense<3.0> : tensor<2xf32>
  %gamma = arith.constant dense<4.0> : tensor<2xf32>
  %beta = arith.constant dense<0.5> : tensor<2xf32>
  %e = tensor.empty() : tensor<1x2x2x2xf32>
  %i = linalg.fill ins(%zero : f32) outs(%e : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %c = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %w : tensor<1x2x4x4xf32>, tensor<2x2x3x3xf32>) outs(%i : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %ev = tensor.empty() : tensor<2xf32>
  %v1 = linalg.generic {indexing_maps = [#v, #v], iterator_types = ["parallel"]} ins(%var : tensor<2xf32>) outs(%ev : tensor<2xf32>) {
  ^bb0(%in: f32, %out: f32):
    %t = arith.truncf %eps : f64 to f32
    %s = arith.addf %in, %t : f32
    linalg.yield %s : f32
  } -> tensor<2xf32>
  %v2 = linalg.generic {indexing_maps = [#v, #v], iterator_types = ["parallel"]} ins(%v1 : tensor<2xf32>) outs(%ev : tensor<2xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = math.sqrt %in : f32
    linalg.yield %s : f32
  } -> tensor<2xf32>
  %v3 = linalg.generic {indexing_maps = [#v, #v], iterator_types = ["parallel"]} ins(%v2 : tensor<2xf32>) outs(%ev : tensor<2xf32>) {
  ^bb0(%in: f32, %out: f32):
    %nz = arith.cmpf one, %in, %zero : f32
    cf.assert %nz, "unimplemented: tensor with zero element"
    %r = arith.divf %one, %in : f32
    linalg.yield %r : f32
  } -> tensor<2xf32>
  %m3 = tensor.expand_shape %mean [[0, 1, 2]] output_shape [2, 1, 1] : tensor<2xf32> into tensor<2x1x1xf32>
  %s3 = tensor.expand_shape %v3 [[0, 1, 2]] output_shape [2, 1, 1] : tensor<2xf32> into tensor<2x1x1xf32>
  %g3 = tensor.expand_shape %gamma [[0, 1, 2]] output_shape [2, 1, 1] : tensor<2xf32> into tensor<2x1x1xf32>
  %b3 = tensor.expand_shape %beta [[0, 1, 2]] output_shape [2, 1, 1] : tensor<2xf32> into tensor<2x1x1xf32>
  %y1 = linalg.generic {indexing_maps = [#id, #ch, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%c, %m3 : tensor<1x2x2x2xf32>, tensor<2x1x1xf32>) outs(%e : tensor<1x2x2x2xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.subf %in, %in2 : f32
    linalg.yield %r : f32
  } -> tensor<1x2x2x2xf32>
  %y2 = linalg.generic {indexing_maps = [#id, #ch, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%y1, %s3 : tensor<1x2x2x2xf32>, tensor<2x1x1xf32>) outs(%e : tensor<1x2x2x2xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.mulf %in, %in2 : f32
    linalg.yield %r : f32
  } -> tensor<1x2x2x2xf32>
  %y3 = linalg.generic {indexing_maps = [#id, #ch, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%y2, %g3 : tensor<1x2x2x2xf32>, tensor<2x1x1xf32>) outs(%e : tensor<1x2x2x2xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.mulf %in, %in2 : f32
    linalg.yield %r : f32
  } -> tensor<1x2x2x2xf32>
  %y4 = linalg.generic {indexing_maps = [#id, #ch, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%y3, %b3 : tensor<1x2x2x2xf32>, tensor<2x1x1xf32>) outs(%e : tensor<1x2x2x2xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.addf %in, %in2 : f32
    linalg.yield %r : f32
  } -> tensor<1x2x2x2xf32>
  %y5 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%y4 : tensor<1x2x2x2xf32>) outs(%e : tensor<1x2x2x2xf32>) {
  ^bb0(%in: f32, %out: f32):
    %r = arith.maximumf %in, %zero : f32
    linalg.yield %r : f32
  } -> tensor<1x2x2x2xf32>
  return %y5 : tensor<1x2x2x2xf32>
}

// -----

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#ch = affine_map<(d0, d1, d2, d3) -> (d1, 0, 0)>
#sc = affine_map<(d0, d1, d2, d3) -> ()>
// A depthwise conv with a bias init (broadcast) and a scalar scale (tensor<f32>)
// then a constant divisor: y = (conv + 1) * 3 / 2 -> filter * 1.5, bias 1.5.
// CHECK-LABEL: func.func @depthwise_bias(
// CHECK-DAG: %[[W:.*]] = arith.constant dense<3.000000e+00> : tensor<2x3x3xf32>
// CHECK-DAG: %[[B:.*]] = arith.constant dense<1.500000e+00> : tensor<2xf32>
// CHECK: linalg.broadcast ins(%[[B]] : tensor<2xf32>)
// CHECK: %[[C:.*]] = linalg.depthwise_conv_2d_nchw_chw {{.*}} ins(%{{.*}}, %[[W]] : tensor<1x2x4x4xf32>, tensor<2x3x3xf32>)
// CHECK-NOT: linalg.generic
// CHECK: return %[[C]]
func.func @depthwise_bias(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x2x2xf32> {
  %w = arith.constant dense<2.0> : tensor<2x3x3xf32>
  %bias = arith.constant dense<1.0> : tensor<2xf32>
  %three = arith.constant dense<3.0> : tensor<f32>
  %two = arith.constant 2.0 : f32
  %e = tensor.empty() : tensor<1x2x2x2xf32>
  %i = linalg.broadcast ins(%bias : tensor<2xf32>) outs(%e : tensor<1x2x2x2xf32>) dimensions = [0, 2, 3]
  %c = linalg.depthwise_conv_2d_nchw_chw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %w : tensor<1x2x4x4xf32>, tensor<2x3x3xf32>) outs(%i : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %y1 = linalg.generic {indexing_maps = [#sc, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%three, %c : tensor<f32>, tensor<1x2x2x2xf32>) outs(%e : tensor<1x2x2x2xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.mulf %in, %in2 : f32
    linalg.yield %r : f32
  } -> tensor<1x2x2x2xf32>
  %y2 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%y1 : tensor<1x2x2x2xf32>) outs(%e : tensor<1x2x2x2xf32>) {
  ^bb0(%in: f32, %out: f32):
    %r = arith.divf %in, %two : f32
    linalg.yield %r : f32
  } -> tensor<1x2x2x2xf32>
  return %y2 : tensor<1x2x2x2xf32>
}

// -----

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#ch = affine_map<(d0, d1, d2, d3) -> (d1, 0, 0)>
#sc = affine_map<(d0, d1, d2, d3) -> ()>
// Left alone: a per-channel value known only at run time, a filter that is an
// argument, an operand that varies per element, a division of a constant by
// the conv, and a conv result used twice.
// CHECK-LABEL: func.func @unchanged(
// CHECK-COUNT-5: linalg.generic
// CHECK-NOT: linalg.broadcast
func.func @unchanged(%x: tensor<1x2x4x4xf32>, %wa: tensor<2x2x3x3xf32>, %s: tensor<2x1x1xf32>, %full: tensor<1x2x2x2xf32>)
    -> (tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>) {
  %zero = arith.constant 0.0 : f32
  %one = arith.constant 1.0 : f32
  %w = arith.constant dense<1.0> : tensor<2x2x3x3xf32>
  %k = arith.constant dense<2.0> : tensor<2x1x1xf32>
  %e = tensor.empty() : tensor<1x2x2x2xf32>
  %i = linalg.fill ins(%zero : f32) outs(%e : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %c1 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %w : tensor<1x2x4x4xf32>, tensor<2x2x3x3xf32>) outs(%i : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %y1 = linalg.generic {indexing_maps = [#id, #ch, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%c1, %s : tensor<1x2x2x2xf32>, tensor<2x1x1xf32>) outs(%e : tensor<1x2x2x2xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.mulf %in, %in2 : f32
    linalg.yield %r : f32
  } -> tensor<1x2x2x2xf32>
  %c2 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %wa : tensor<1x2x4x4xf32>, tensor<2x2x3x3xf32>) outs(%i : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %y2 = linalg.generic {indexing_maps = [#id, #ch, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%c2, %k : tensor<1x2x2x2xf32>, tensor<2x1x1xf32>) outs(%e : tensor<1x2x2x2xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.mulf %in, %in2 : f32
    linalg.yield %r : f32
  } -> tensor<1x2x2x2xf32>
  %c3 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %w : tensor<1x2x4x4xf32>, tensor<2x2x3x3xf32>) outs(%i : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %y3 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%c3, %full : tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>) outs(%e : tensor<1x2x2x2xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.mulf %in, %in2 : f32
    linalg.yield %r : f32
  } -> tensor<1x2x2x2xf32>
  %c4 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %w : tensor<1x2x4x4xf32>, tensor<2x2x3x3xf32>) outs(%i : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %y4 = linalg.generic {indexing_maps = [#ch, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%k, %c4 : tensor<2x1x1xf32>, tensor<1x2x2x2xf32>) outs(%e : tensor<1x2x2x2xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.divf %in, %in2 : f32
    linalg.yield %r : f32
  } -> tensor<1x2x2x2xf32>
  %c5 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %w : tensor<1x2x4x4xf32>, tensor<2x2x3x3xf32>) outs(%i : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %y5 = linalg.generic {indexing_maps = [#id, #ch, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%c5, %k : tensor<1x2x2x2xf32>, tensor<2x1x1xf32>) outs(%e : tensor<1x2x2x2xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.mulf %in, %in2 : f32
    linalg.yield %r : f32
  } -> tensor<1x2x2x2xf32>
  return %y1, %y2, %y3, %y4, %y5, %c5 : tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>
}

// -----

#v = affine_map<(d0) -> (d0)>
#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#ch = affine_map<(d0, d1, d2, d3) -> (d1, 0, 0)>
// Not after a foldable conv (a run-time input): the computed per-channel
// operand 1/sqrt(var + 1) = [0.5, 0.25] becomes a constant; the op stays.
// CHECK-LABEL: func.func @computed_operand(
// CHECK-SAME: %[[Y:[^:]*]]: tensor<1x2x2x2xf32>
// CHECK: %[[S:.*]] = arith.constant dense<[{{\[\[}}5.000000e-01]], {{\[\[}}2.500000e-01]]]> : tensor<2x1x1xf32>
// CHECK: linalg.generic {{.*}} ins(%[[Y]], %[[S]] : tensor<1x2x2x2xf32>, tensor<2x1x1xf32>)
// CHECK-NOT: math.sqrt
func.func @computed_operand(%y: tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32> {
  %one = arith.constant 1.0 : f32
  %var = arith.constant dense<[3.0, 15.0]> : tensor<2xf32>
  %ev = tensor.empty() : tensor<2xf32>
  %v1 = linalg.generic {indexing_maps = [#v, #v], iterator_types = ["parallel"]} ins(%var : tensor<2xf32>) outs(%ev : tensor<2xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.addf %in, %one : f32
    %r = math.sqrt %s : f32
    %q = arith.divf %one, %r : f32
    linalg.yield %q : f32
  } -> tensor<2xf32>
  %s3 = tensor.expand_shape %v1 [[0, 1, 2]] output_shape [2, 1, 1] : tensor<2xf32> into tensor<2x1x1xf32>
  %e = tensor.empty() : tensor<1x2x2x2xf32>
  %r = linalg.generic {indexing_maps = [#id, #ch, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%y, %s3 : tensor<1x2x2x2xf32>, tensor<2x1x1xf32>) outs(%e : tensor<1x2x2x2xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %m = arith.mulf %in, %in2 : f32
    linalg.yield %m : f32
  } -> tensor<1x2x2x2xf32>
  return %r : tensor<1x2x2x2xf32>
}
