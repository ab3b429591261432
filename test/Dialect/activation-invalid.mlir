// Negative verifier tests of tasd.decompose_activation: one rule per chunk.
// RUN: tasdc-opt %s --split-input-file --verify-diagnostics

func.func @missing_config(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  // expected-error @+1 {{'tasd.decompose_activation' op requires attribute 'config'}}
  %a = "tasd.decompose_activation"(%x) {axis = 1 : i64} : (tensor<2x8xf32>) -> tensor<2x8xf32>
  return %a : tensor<2x8xf32>
}

// -----

func.func @bad_config(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  // expected-error @+1 {{'tasd.decompose_activation' op attribute 'config': invalid N:M pattern '3:2': N must be <= M}}
  %a = "tasd.decompose_activation"(%x) {config = "3:2", axis = 1 : i64} : (tensor<2x8xf32>) -> tensor<2x8xf32>
  return %a : tensor<2x8xf32>
}

// -----

func.func @dense_config(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  // expected-error @+1 {{'tasd.decompose_activation' op attribute 'config' must name at least one N:M term, got 'dense'}}
  %a = "tasd.decompose_activation"(%x) {config = "dense", axis = 1 : i64} : (tensor<2x8xf32>) -> tensor<2x8xf32>
  return %a : tensor<2x8xf32>
}

// -----

func.func @axis_out_of_range(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  // expected-error @+1 {{'tasd.decompose_activation' op attribute 'axis' = 2 is out of range for rank-2 input tensor<2x8xf32>}}
  %a = "tasd.decompose_activation"(%x) {config = "2:4", axis = 2 : i64} : (tensor<2x8xf32>) -> tensor<2x8xf32>
  return %a : tensor<2x8xf32>
}

// -----

func.func @type_change(%x: tensor<2x8xf32>) -> tensor<8x2xf32> {
  // expected-error @+1 {{'tasd.decompose_activation' op result type tensor<8x2xf32> must equal the input type tensor<2x8xf32>}}
  %a = "tasd.decompose_activation"(%x) {config = "2:4", axis = 1 : i64} : (tensor<2x8xf32>) -> tensor<8x2xf32>
  return %a : tensor<8x2xf32>
}

// -----

func.func @integer_input(%x: tensor<2x8xi32>) -> tensor<2x8xi32> {
  // expected-error @+1 {{'tasd.decompose_activation' op input must have a floating-point element type, got i32}}
  %a = "tasd.decompose_activation"(%x) {config = "2:4", axis = 1 : i64} : (tensor<2x8xi32>) -> tensor<2x8xi32>
  return %a : tensor<2x8xi32>
}

// -----

func.func @nan_config(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  // expected-error @+1 {{'tasd.decompose_activation' op attribute 'config': invalid N:M pattern 'nan:4': expected N:M with integers N and M}}
  %a = "tasd.decompose_activation"(%x) {config = "2:4+nan:4", axis = 1 : i64} : (tensor<2x8xf32>) -> tensor<2x8xf32>
  return %a : tensor<2x8xf32>
}

// -----

func.func @stats_act_config(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  // expected-error @+1 {{'tasd.decompose_activation' op attribute 'tasd.stats' entry 'act_config': invalid N:M pattern '1:3': M=3 is not one of the allowed M values (2, 4, 8, 16)}}
  %a = "tasd.decompose_activation"(%x) {config = "2:4", axis = 1 : i64, tasd.stats = {act_config = "1:3"}} : (tensor<2x8xf32>) -> tensor<2x8xf32>
  return %a : tensor<2x8xf32>
}
