// tasd-split-grouped-convs: linalg.conv_2d_ngchw_gfchw with a constant filter
// (through expand_shape) and at most max-groups groups becomes one
// linalg.conv_2d_nchw_fchw per group: input and init sliced at group g (the
// group dim dropped), the filter's group g a new constant, the result
// inserted back at group g; strides and dilations kept. A run-time filter,
// dynamic shapes or more groups than max-groups stay grouped.
// RUN: tasdc-opt %s --split-input-file -p tasd-split-grouped-convs | FileCheck %s
// RUN: tasdc-opt %s --split-input-file -p 'tasd-split-grouped-convs{max-groups=1}' | FileCheck %s --check-prefix=MAX1
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-split-grouped-convs{max-groups=0}' | FileCheck %s --check-prefix=BAD
// BAD: tasdc-opt: error: tasd-split-grouped-convs: max-groups must be at least 1, got 0

// Two groups of a [4, 2, 1, 1] filter: W[o] = o + 1 for every weight of output o.
// CHECK-LABEL: func.func @two_groups(
// CHECK-SAME: %[[X:.*]]: tensor<1x2x2x7x4xf32>, %[[Y0:.*]]: tensor<1x2x2x4x4xf32>
// CHECK-NOT: conv_2d_ngchw_gfchw
// CHECK: %[[F0:.*]] = arith.constant dense_resource<tasd_group_filter_0> : tensor<2x2x1x1xf32>
// CHECK: %[[X0:.*]] = tensor.extract_slice %[[X]][0, 0, 0, 0, 0] [1, 1, 2, 7, 4] [1, 1, 1, 1, 1] : tensor<1x2x2x7x4xf32> to tensor<1x2x7x4xf32>
// CHECK: %[[I0:.*]] = tensor.extract_slice %[[Y0]][0, 0, 0, 0, 0] [1, 1, 2, 4, 4] [1, 1, 1, 1, 1] : tensor<1x2x2x4x4xf32> to tensor<1x2x4x4xf32>
// CHECK: %[[C0:.*]] = linalg.conv_2d_nchw_fchw {dilations = dense<[1, 2]> : tensor<2xi64>, strides = dense<[2, 1]> : tensor<2xi64>} ins(%[[X0]], %[[F0]] : {{.*}}) outs(%[[I0]] : tensor<1x2x4x4xf32>)
// CHECK: %[[R0:.*]] = tensor.insert_slice %[[C0]] into %[[Y0]][0, 0, 0, 0, 0] [1, 1, 2, 4, 4] [1, 1, 1, 1, 1]
// CHECK: %[[F1:.*]] = arith.constant dense_resource<tasd_group_filter_1>
// CHECK: %[[X1:.*]] = tensor.extract_slice %[[X]][0, 1, 0, 0, 0] [1, 1, 2, 7, 4]
// CHECK: %[[I1:.*]] = tensor.extract_slice %[[R0]][0, 1, 0, 0, 0] [1, 1, 2, 4, 4]
// CHECK: %[[C1:.*]] = linalg.conv_2d_nchw_fchw {{.*}} ins(%[[X1]], %[[F1]] : {{.*}}) outs(%[[I1]] :
// CHECK: %[[R1:.*]] = tensor.insert_slice %[[C1]] into %[[R0]][0, 1, 0, 0, 0]
// CHECK: return %[[R1]]
// The group filters (a 4-byte alignment header, then f32 little-endian): group 0 holds
// outputs 0 and 1 (values 1, 2), group 1 outputs 2 and 3 (3, 4).
// CHECK: tasd_group_filter_0: "0x040000000000803F0000803F0000004000000040"
// CHECK: tasd_group_filter_1: "0x0400000000004040000040400000804000008040"
// MAX1-LABEL: func.func @two_groups(
// MAX1: linalg.conv_2d_ngchw_gfchw
func.func @two_groups(%x: tensor<1x2x2x7x4xf32>, %y0: tensor<1x2x2x4x4xf32>) -> tensor<1x2x2x4x4xf32> {
  %w = arith.constant dense<[[[[1.0]], [[1.0]]], [[[2.0]], [[2.0]]], [[[3.0]], [[3.0]]], [[[4.0]], [[4.0]]]]> : tensor<4x2x1x1xf32>
  %f = tensor.expand_shape %w [[0, 1], [2], [3], [4]] output_shape [2, 2, 2, 1, 1] : tensor<4x2x1x1xf32> into tensor<2x2x2x1x1xf32>
  %y = linalg.conv_2d_ngchw_gfchw {dilations = dense<[1, 2]> : vector<2xi64>, strides = dense<[2, 1]> : vector<2xi64>}
       ins(%x, %f : tensor<1x2x2x7x4xf32>, tensor<2x2x2x1x1xf32>) outs(%y0 : tensor<1x2x2x4x4xf32>) -> tensor<1x2x2x4x4xf32>
  return %y : tensor<1x2x2x4x4xf32>
}

// -----

// A run-time filter: left grouped.
// CHECK-LABEL: func.func @runtime_filter(
// CHECK: linalg.conv_2d_ngchw_gfchw
// CHECK-NOT: conv_2d_nchw_fchw
func.func @runtime_filter(%x: tensor<1x2x2x4x4xf32>, %f: tensor<2x2x2x1x1xf32>, %y0: tensor<1x2x2x4x4xf32>) -> tensor<1x2x2x4x4xf32> {
  %y = linalg.conv_2d_ngchw_gfchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>}
       ins(%x, %f : tensor<1x2x2x4x4xf32>, tensor<2x2x2x1x1xf32>) outs(%y0 : tensor<1x2x2x4x4xf32>) -> tensor<1x2x2x4x4xf32>
  return %y : tensor<1x2x2x4x4xf32>
}
