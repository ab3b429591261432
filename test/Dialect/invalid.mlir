// Negative verifier tests: one rule per chunk, each pinned to its message.
// RUN: tasdc-opt %s --split-input-file --verify-diagnostics

func.func @n_zero(%v: tensor<2x4xf32>, %i: tensor<2x4xi8>) -> tensor<2x8xf32> {
  // expected-error @+1 {{'tasd.sparse_weight' op attribute 'n' must satisfy 0 < n <= m, got 0:4}}
  %w = "tasd.sparse_weight"(%v, %i) {n = 0 : i64, m = 4 : i64, axis = 1 : i64, padding = 0 : i64} : (tensor<2x4xf32>, tensor<2x4xi8>) -> tensor<2x8xf32>
  return %w : tensor<2x8xf32>
}

// -----

func.func @n_above_m(%v: tensor<2x4xf32>, %i: tensor<2x4xi8>) -> tensor<2x8xf32> {
  // expected-error @+1 {{'tasd.sparse_weight' op attribute 'n' must satisfy 0 < n <= m, got 3:2}}
  %w = "tasd.sparse_weight"(%v, %i) {n = 3 : i64, m = 2 : i64, axis = 1 : i64, padding = 0 : i64} : (tensor<2x4xf32>, tensor<2x4xi8>) -> tensor<2x8xf32>
  return %w : tensor<2x8xf32>
}

// -----

func.func @values_shape(%v: tensor<2x3xf32>, %i: tensor<2x3xi8>) -> tensor<2x8xf32> {
  // expected-error @+1 {{'tasd.sparse_weight' op values shape [2, 3] does not match 2:4 of dense shape [2, 8] along axis 1; expected [2, 4]}}
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 1 : i64, padding = 0 : i64} : (tensor<2x3xf32>, tensor<2x3xi8>) -> tensor<2x8xf32>
  return %w : tensor<2x8xf32>
}

// -----

func.func @indices_shape(%v: tensor<2x4xf32>, %i: tensor<4x2xi8>) -> tensor<2x8xf32> {
  // expected-error @+1 {{'tasd.sparse_weight' op indices shape [4, 2] does not match values shape [2, 4]}}
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 1 : i64, padding = 0 : i64} : (tensor<2x4xf32>, tensor<4x2xi8>) -> tensor<2x8xf32>
  return %w : tensor<2x8xf32>
}

// -----

func.func @index_out_of_range() -> tensor<2x8xf32> {
  %v = arith.constant dense<1.0> : tensor<2x4xf32>
  %i = arith.constant dense<[[0, 1, 2, 3], [0, 4, 1, 2]]> : tensor<2x4xi8>
  // expected-error @+1 {{'tasd.sparse_weight' op index 4 at [1, 1] is out of range for m=4}}
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 1 : i64, padding = 0 : i64} : (tensor<2x4xf32>, tensor<2x4xi8>) -> tensor<2x8xf32>
  return %w : tensor<2x8xf32>
}

// -----

func.func @element_type(%v: tensor<2x4xf16>, %i: tensor<2x4xi8>) -> tensor<2x8xf32> {
  // expected-error @+1 {{'tasd.sparse_weight' op element type mismatch: values are f16 but result is f32}}
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 1 : i64, padding = 0 : i64} : (tensor<2x4xf16>, tensor<2x4xi8>) -> tensor<2x8xf32>
  return %w : tensor<2x8xf32>
}

// -----

func.func @index_type(%v: tensor<2x4xf32>, %i: tensor<2x4xi32>) -> tensor<2x8xf32> {
  // expected-error @+1 {{'tasd.sparse_weight' op indices must have element type i8, got i32}}
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 1 : i64, padding = 0 : i64} : (tensor<2x4xf32>, tensor<2x4xi32>) -> tensor<2x8xf32>
  return %w : tensor<2x8xf32>
}

// -----

func.func @not_divisible(%v: tensor<2x4xf32>, %i: tensor<2x4xi8>) -> tensor<2x6xf32> {
  // expected-error @+1 {{'tasd.sparse_weight' op reduction size 6 of axis 1 is not divisible by m=4 (padding=0); set 'padding' to 2 to pad explicitly}}
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 1 : i64, padding = 0 : i64} : (tensor<2x4xf32>, tensor<2x4xi8>) -> tensor<2x6xf32>
  return %w : tensor<2x6xf32>
}

// -----

func.func @padded_is_fine(%v: tensor<2x4xf32>, %i: tensor<2x4xi8>) -> tensor<2x6xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 1 : i64, padding = 2 : i64} : (tensor<2x4xf32>, tensor<2x4xi8>) -> tensor<2x6xf32>
  return %w : tensor<2x6xf32>
}

// -----

func.func @missing_attribute(%v: tensor<2x4xf32>, %i: tensor<2x4xi8>) -> tensor<2x8xf32> {
  // expected-error @+1 {{'tasd.sparse_weight' op requires attribute 'padding'}}
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 1 : i64} : (tensor<2x4xf32>, tensor<2x4xi8>) -> tensor<2x8xf32>
  return %w : tensor<2x8xf32>
}

// -----

func.func @mistyped_attribute(%v: tensor<2x4xf32>, %i: tensor<2x4xi8>) -> tensor<2x8xf32> {
  // expected-error @+1 {{'tasd.sparse_weight' op attribute 'm' must be an integer attribute, got "4"}}
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = "4", axis = 1 : i64, padding = 0 : i64} : (tensor<2x4xf32>, tensor<2x4xi8>) -> tensor<2x8xf32>
  return %w : tensor<2x8xf32>
}

// -----

func.func @matmul_dense_operand(%x: tensor<3x8xf32>, %w: tensor<8x5xf32>) -> tensor<3x5xf32> {
  // expected-error @+1 {{'tasd.matmul' op operand #1 must be produced by 'tasd.sparse_weight'}}
  %y = "tasd.matmul"(%x, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}

// -----

func.func @matmul_wrong_axis(%x: tensor<3x8xf32>, %v: tensor<8x2xf32>, %i: tensor<8x2xi8>) -> tensor<3x5xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 1 : i64, m = 4 : i64, axis = 1 : i64, padding = 3 : i64} : (tensor<8x2xf32>, tensor<8x2xi8>) -> tensor<8x5xf32>
  // expected-error @+1 {{'tasd.matmul' op sparse operand #1 is compressed along axis 1 but the reduction axis is 0}}
  %y = "tasd.matmul"(%x, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}

// -----

func.func @matmul_shapes(%x: tensor<3x7xf32>, %v: tensor<4x5xf32>, %i: tensor<4x5xi8>) -> tensor<3x5xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  // expected-error @+1 {{'tasd.matmul' op incompatible shapes [3, 7] x [8, 5] -> [3, 5]}}
  %y = "tasd.matmul"(%x, %w) {sparse_operand = 1 : i64} : (tensor<3x7xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}

// -----

func.func @matmul_element_types(%x: tensor<3x8xf16>, %v: tensor<4x5xf32>, %i: tensor<4x5xi8>) -> tensor<3x5xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  // expected-error @+1 {{'tasd.matmul' op element type mismatch between operands and result: ['f16', 'f32']}}
  %y = "tasd.matmul"(%x, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf16>, tensor<8x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}

// -----

func.func @conv_filter_size(%x: tensor<1x2x6x6xf32>, %v: tensor<4x8xf32>, %i: tensor<4x8xi8>) -> tensor<1x4x4x4xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 1 : i64, padding = 0 : i64} : (tensor<4x8xf32>, tensor<4x8xi8>) -> tensor<4x16xf32>
  // expected-error @+1 {{'tasd.conv2d' op filter reduction size 16 != C*KH*KW = 2*3*3}}
  %y = "tasd.conv2d"(%x, %w) {sparse_operand = 1 : i64, kernel_size = array<i64: 3, 3>, strides = array<i64: 1, 1>, dilations = array<i64: 1, 1>} : (tensor<1x2x6x6xf32>, tensor<4x16xf32>) -> tensor<1x4x4x4xf32>
  return %y : tensor<1x4x4x4xf32>
}

// -----

func.func @series_bad_config(%x: tensor<3x8xf32>, %v: tensor<4x5xf32>, %i: tensor<4x5xi8>) -> tensor<3x5xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  %y1 = "tasd.matmul"(%x, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  // expected-error @+1 {{'tasd.series' op attribute 'config': invalid N:M pattern '3:2'}}
  %y = "tasd.series"(%y1) {config = "3:2"} : (tensor<3x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}

// -----

func.func @series_term_count(%x: tensor<3x8xf32>, %v: tensor<4x5xf32>, %i: tensor<4x5xi8>) -> tensor<3x5xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  %y1 = "tasd.matmul"(%x, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  // expected-error @+1 {{'tasd.series' op config '2:4+1:4' has 2 terms but the op has 1 operands}}
  %y = "tasd.series"(%y1) {config = "2:4+1:4"} : (tensor<3x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}

// -----

func.func @series_pattern(%x: tensor<3x8xf32>, %v: tensor<4x5xf32>, %i: tensor<4x5xi8>) -> tensor<3x5xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  %y1 = "tasd.matmul"(%x, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  // expected-error @+1 {{'tasd.series' op term #0 is 2:4 but config '1:4' says 1:4}}
  %y = "tasd.series"(%y1) {config = "1:4"} : (tensor<3x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}

// -----

func.func @series_dense_operand(%x: tensor<3x8xf32>, %x2: tensor<3x8xf32>, %v: tensor<4x5xf32>, %i: tensor<4x5xi8>) -> tensor<3x5xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  %y1 = "tasd.matmul"(%x, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  %y2 = "tasd.matmul"(%x2, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  // expected-error @+1 {{'tasd.series' op term #1 contracts a different dense operand than term #0}}
  %y = "tasd.series"(%y1, %y2) {config = "2:4+2:4"} : (tensor<3x5xf32>, tensor<3x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}

// -----

// A config that parse_config refuses (here a term with a non-integer N) is refused by the verifier.
func.func @series_nan_config(%x: tensor<3x8xf32>, %v: tensor<4x5xf32>, %i: tensor<4x5xi8>) -> tensor<3x5xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  %y1 = "tasd.matmul"(%x, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  %w2 = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  %y2 = "tasd.matmul"(%x, %w2) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  // expected-error @+1 {{'tasd.series' op attribute 'config': invalid N:M pattern 'nan:4': expected N:M with integers N and M}}
  %y = "tasd.series"(%y1, %y2) {config = "2:4+nan:4"} : (tensor<3x5xf32>, tensor<3x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}

// -----

// The series a tasd.stats record names is what the report prints: it must parse too.
func.func @series_stats_nan_config(%x: tensor<3x8xf32>, %v: tensor<4x5xf32>, %i: tensor<4x5xi8>) -> tensor<3x5xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  %y1 = "tasd.matmul"(%x, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  // expected-error @+1 {{'tasd.series' op attribute 'tasd.stats' entry 'config': invalid N:M pattern 'nan:4': expected N:M with integers N and M}}
  %y = "tasd.series"(%y1) {config = "2:4", tasd.layer = "l0", tasd.stats = {config = "2:4+nan:4", rel_error = 0.5 : f64}} : (tensor<3x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}

// -----

func.func @series_stats_other_config(%x: tensor<3x8xf32>, %v: tensor<4x5xf32>, %i: tensor<4x5xi8>) -> tensor<3x5xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  %y1 = "tasd.matmul"(%x, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  // expected-error @+1 {{'tasd.series' op attribute 'tasd.stats' records config '1:4' but the op's config is '2:4'}}
  %y = "tasd.series"(%y1) {config = "2:4", tasd.stats = {config = "1:4"}} : (tensor<3x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}

// -----

func.func @series_stats_not_a_dict(%x: tensor<3x8xf32>, %v: tensor<4x5xf32>, %i: tensor<4x5xi8>) -> tensor<3x5xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  %y1 = "tasd.matmul"(%x, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  // expected-error @+1 {{'tasd.series' op attribute 'tasd.stats' must be a dictionary, got "2:4"}}
  %y = "tasd.series"(%y1) {config = "2:4", tasd.stats = "2:4"} : (tensor<3x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}

// -----

func.func @series_stats_cheapest_lossless(%x: tensor<3x8xf32>, %v: tensor<4x5xf32>, %i: tensor<4x5xi8>) -> tensor<3x5xf32> {
  %w = "tasd.sparse_weight"(%v, %i) {n = 2 : i64, m = 4 : i64, axis = 0 : i64, padding = 0 : i64} : (tensor<4x5xf32>, tensor<4x5xi8>) -> tensor<8x5xf32>
  %y1 = "tasd.matmul"(%x, %w) {sparse_operand = 1 : i64} : (tensor<3x8xf32>, tensor<8x5xf32>) -> tensor<3x5xf32>
  // expected-error @+1 {{'tasd.series' op attribute 'tasd.stats' entry 'cheapest_lossless': invalid N:M pattern '2:nan': expected N:M with integers N and M}}
  %y = "tasd.series"(%y1) {config = "2:4", tasd.stats = {cheapest_lossless = "2:nan+2:4", config = "2:4"}} : (tensor<3x5xf32>) -> tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}
