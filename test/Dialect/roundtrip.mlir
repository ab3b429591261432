// Every TASD op prints and parses back to identical text in a fresh context.
// RUN: tasdc-opt %s --split-input-file > %t.1.mlir
// RUN: tasdc-opt %t.1.mlir --split-input-file > %t.2.mlir
// RUN: diff %t.1.mlir %t.2.mlir
// RUN: FileCheck %s --input-file=%t.2.mlir

// CHECK-LABEL: func.func @sparse_weight
// CHECK: "tasd.sparse_weight"(%{{.*}}, %{{.*}}) {axis = 1 : i64, m = 4 : i64, n = 2 : i64, padding = 0 : i64} : (tensor<2x4xf32>, tensor<2x4xi8>) -> tensor<2x8xf32>
func.func @sparse_weight() -> tensor<2x8xf32> {
  %v = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]> : tensor<2x4xf32>
  %i = arith.constant dense<[[0, 3, 1, 2], [0, 1, 2, 3]]> : tensor<2x4xi8>
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 1 : i64, padding = 0 : i64} : (tensor<2x4xf32>, tensor<2x4xi8>) -> tensor<2x8xf32>
  return %w : tensor<2x8xf32>
}

// -----

// CHECK-LABEL: func.func @matmul
// CHECK: "tasd.matmul"(%arg0, %{{.*}}) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
func.func @matmul(%x: tensor<3x8xf32>, %v: tensor<4x5xf32>, %i: tensor<4x5xi8>) -> tensor<3x5xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  %y = "tasd.matmul"(%x, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}

// -----

// CHECK-LABEL: func.func @batch_matmul
// CHECK: "tasd.batch_matmul"(%{{.*}}, %arg0) {sparse_operand = 0 : i64} : (tensor<2x3x8xf32>, tensor<2x8x5xf32>) -> tensor<2x3x5xf32>
func.func @batch_matmul(%x: tensor<2x8x5xf32>, %v: tensor<2x3x2xf32>, %i: tensor<2x3x2xi8>) -> tensor<2x3x5xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 1 : i64, m = 4 : i64, axis = 2 : i64, padding = 0 : i64} : (tensor<2x3x2xf32>, tensor<2x3x2xi8>) -> tensor<2x3x8xf32>
  %y = "tasd.batch_matmul"(%w, %x) {sparse_operand = 0 : i64} : (tensor<2x3x8xf32>, tensor<2x8x5xf32>) -> tensor<2x3x5xf32>
  return %y : tensor<2x3x5xf32>
}

// -----

// CHECK-LABEL: func.func @conv2d
// CHECK: "tasd.conv2d"(%arg0, %{{.*}}) {dilations = array<i64: 1, 1>, kernel_size = array<i64: 3, 3>, sparse_operand = 1 : i64, strides = array<i64: 1, 1>} : (tensor<1x2x6x6xf32>, tensor<4x18xf32>) -> tensor<1x4x4x4xf32>
func.func @conv2d(%x: tensor<1x2x6x6xf32>, %v: tensor<4x10xf32>, %i: tensor<4x10xi8>) -> tensor<1x4x4x4xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 1 : i64, padding = 2 : i64} : (tensor<4x10xf32>, tensor<4x10xi8>) -> tensor<4x18xf32>
  %y = "tasd.conv2d"(%x, %w) {sparse_operand = 1 : i64, kernel_size = array<i64: 3, 3>, strides = array<i64: 1, 1>, dilations = array<i64: 1, 1>} : (tensor<1x2x6x6xf32>, tensor<4x18xf32>) -> tensor<1x4x4x4xf32>
  return %y : tensor<1x4x4x4xf32>
}

// -----

// CHECK-LABEL: func.func @series
// CHECK: "tasd.series"(%{{.*}}, %{{.*}}) {config = "2:4+1:8"} : (tensor<3x5xf32>, tensor<3x5xf32>) -> tensor<3x5xf32>
func.func @series(%x: tensor<3x8xf32>, %v1: tensor<4x5xf32>, %i1: tensor<4x5xi8>, %v2: tensor<1x5xf32>, %i2: tensor<1x5xi8>) -> tensor<3x5xf32> {
  %w1 = "tasd.sparse_weight"(%v1, %i1) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  %w2 = "tasd.sparse_weight"(%v2, %i2) {n = 1 : i64, m = 8 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<1x5xf32>, tensor<1x5xi8>) -> tensor<8x5xf32>
  %y1 = "tasd.matmul"(%x, %w1) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  %y2 = "tasd.matmul"(%x, %w2) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  %y = "tasd.series"(%y1, %y2) {config = "2:4+1:8"} : (tensor<3x5xf32>, tensor<3x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}
