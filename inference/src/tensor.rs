//! Integer tensors: `i8`, `i16` and `i32`, row-major, little-endian when serialized.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Element type of a tensor. The discriminant is the code used in commitments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// Signed 8-bit.
    I8 = 1,
    /// Signed 16-bit.
    I16 = 2,
    /// Signed 32-bit.
    I32 = 3,
}

impl DType {
    /// The code bound into tensor hashes and program encodings.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Inverse of [`DType::code`].
    pub fn from_code(code: u8) -> Result<Self> {
        match code {
            1 => Ok(Self::I8),
            2 => Ok(Self::I16),
            3 => Ok(Self::I32),
            _ => Err(Error::Decode(format!("unknown dtype code {code}"))),
        }
    }

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 => 2,
            Self::I32 => 4,
        }
    }

    /// Smallest representable value.
    pub const fn min(self) -> i64 {
        match self {
            Self::I8 => i8::MIN as i64,
            Self::I16 => i16::MIN as i64,
            Self::I32 => i32::MIN as i64,
        }
    }

    /// Largest representable value.
    pub const fn max(self) -> i64 {
        match self {
            Self::I8 => i8::MAX as i64,
            Self::I16 => i16::MAX as i64,
            Self::I32 => i32::MAX as i64,
        }
    }

    /// Clamps `v` into this dtype's range (saturation).
    #[inline]
    pub fn saturate(self, v: i128) -> i64 {
        v.clamp(self.min() as i128, self.max() as i128) as i64
    }

    /// Lower-case name (`i8`, `i16`, `i32`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::I8 => "i8",
            Self::I16 => "i16",
            Self::I32 => "i32",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor's dtype and shape: what a program declares for every slot and weight.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
}

impl TensorType {
    /// A new tensor type.
    pub fn new(dtype: DType, shape: impl Into<Vec<usize>>) -> Self {
        Self {
            dtype,
            shape: shape.into(),
        }
    }

    /// Number of elements (1 for a scalar of rank 0).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size of the serialized data in bytes.
    pub fn byte_len(&self) -> usize {
        self.numel() * self.dtype.size()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:?}", self.dtype, self.shape)
    }
}

/// Typed element storage of a tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TensorData {
    /// `i8` elements.
    I8(Vec<i8>),
    /// `i16` elements.
    I16(Vec<i16>),
    /// `i32` elements.
    I32(Vec<i32>),
}

impl TensorData {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Self::I8(_) => DType::I8,
            Self::I16(_) => DType::I16,
            Self::I32(_) => DType::I32,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::I8(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::I32(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Zero-filled storage of `dtype` with `len` elements.
    pub fn zeros(dtype: DType, len: usize) -> Self {
        match dtype {
            DType::I8 => Self::I8(vec![0; len]),
            DType::I16 => Self::I16(vec![0; len]),
            DType::I32 => Self::I32(vec![0; len]),
        }
    }
}

/// A dense, row-major integer tensor.
#[derive(Clone, PartialEq, Eq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor({}{:?}, {} elements)",
            self.dtype(),
            self.shape,
            self.numel()
        )
    }
}

impl Tensor {
    /// Builds a tensor, checking that the data length matches the shape.
    pub fn new(shape: impl Into<Vec<usize>>, data: TensorData) -> Result<Self> {
        let shape = shape.into();
        let expected = checked_numel(&shape)?;
        if expected != data.len() {
            return Err(Error::DataLength {
                shape,
                expected,
                got: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    /// An `i8` tensor.
    pub fn from_i8(shape: impl Into<Vec<usize>>, data: Vec<i8>) -> Result<Self> {
        Self::new(shape, TensorData::I8(data))
    }

    /// An `i16` tensor.
    pub fn from_i16(shape: impl Into<Vec<usize>>, data: Vec<i16>) -> Result<Self> {
        Self::new(shape, TensorData::I16(data))
    }

    /// An `i32` tensor.
    pub fn from_i32(shape: impl Into<Vec<usize>>, data: Vec<i32>) -> Result<Self> {
        Self::new(shape, TensorData::I32(data))
    }

    /// A zero tensor of the given type.
    pub fn zeros(ty: &TensorType) -> Result<Self> {
        let n = checked_numel(&ty.shape)?;
        Ok(Self {
            shape: ty.shape.clone(),
            data: TensorData::zeros(ty.dtype, n),
        })
    }

    /// Builds a tensor of `dtype` from wide values that must already be in range.
    pub(crate) fn from_values(dtype: DType, shape: Vec<usize>, values: Vec<i64>) -> Self {
        let data = match dtype {
            DType::I8 => TensorData::I8(values.into_iter().map(|v| v as i8).collect()),
            DType::I16 => TensorData::I16(values.into_iter().map(|v| v as i16).collect()),
            DType::I32 => TensorData::I32(values.into_iter().map(|v| v as i32).collect()),
        };
        Self { shape, data }
    }

    /// Decodes little-endian bytes of `dtype` into a tensor of `shape`.
    pub fn from_le_bytes(dtype: DType, shape: impl Into<Vec<usize>>, bytes: &[u8]) -> Result<Self> {
        let shape = shape.into();
        let n = checked_numel(&shape)?;
        if bytes.len() != n * dtype.size() {
            return Err(Error::DataLength {
                shape,
                expected: n * dtype.size(),
                got: bytes.len(),
            });
        }
        let data = match dtype {
            DType::I8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
            DType::I16 => TensorData::I16(
                bytes
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            DType::I32 => TensorData::I32(
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
        };
        Ok(Self { shape, data })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The dtype and shape.
    pub fn ty(&self) -> TensorType {
        TensorType::new(self.dtype(), self.shape.clone())
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The typed storage.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// The typed storage, mutable (the shape stays).
    pub fn data_mut(&mut self) -> &mut TensorData {
        &mut self.data
    }

    /// Consumes the tensor into its storage.
    pub fn into_data(self) -> TensorData {
        self.data
    }

    /// The same data under another shape with the same element count.
    pub fn reshaped(self, shape: Vec<usize>) -> Result<Self> {
        Self::new(shape, self.data)
    }

    /// The `i8` elements, or an error naming `what` if the dtype differs.
    pub fn as_i8(&self, what: &str) -> Result<&[i8]> {
        match &self.data {
            TensorData::I8(v) => Ok(v),
            d => Err(Error::DType {
                what: what.to_string(),
                expected: "i8".into(),
                got: d.dtype(),
            }),
        }
    }

    /// The `i16` elements, or an error naming `what` if the dtype differs.
    pub fn as_i16(&self, what: &str) -> Result<&[i16]> {
        match &self.data {
            TensorData::I16(v) => Ok(v),
            d => Err(Error::DType {
                what: what.to_string(),
                expected: "i16".into(),
                got: d.dtype(),
            }),
        }
    }

    /// The `i32` elements, or an error naming `what` if the dtype differs.
    pub fn as_i32(&self, what: &str) -> Result<&[i32]> {
        match &self.data {
            TensorData::I32(v) => Ok(v),
            d => Err(Error::DType {
                what: what.to_string(),
                expected: "i32".into(),
                got: d.dtype(),
            }),
        }
    }

    /// Element `i` widened to `i64`.
    #[inline]
    pub fn get(&self, i: usize) -> i64 {
        match &self.data {
            TensorData::I8(v) => v[i] as i64,
            TensorData::I16(v) => v[i] as i64,
            TensorData::I32(v) => v[i] as i64,
        }
    }

    /// All elements widened to `i64`.
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            TensorData::I8(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I16(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }

    /// The data as little-endian bytes (what commitments hash).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match &self.data {
            TensorData::I8(v) => v.iter().map(|&x| x as u8).collect(),
            TensorData::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// Element count of `shape`, or an error if it overflows `usize`.
pub fn checked_numel(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::Shape(format!("shape {shape:?} has too many elements")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn le_bytes_round_trip() {
        let t = Tensor::from_i16([2, 2], vec![-1, 2, i16::MIN, i16::MAX]).unwrap();
        let b = t.to_le_bytes();
        assert_eq!(b.len(), 8);
        assert_eq!(Tensor::from_le_bytes(DType::I16, [2, 2], &b).unwrap(), t);
    }

    #[test]
    fn wrong_length_is_an_error() {
        assert!(matches!(
            Tensor::from_i8([3], vec![1, 2]),
            Err(Error::DataLength {
                expected: 3,
                got: 2,
                ..
            })
        ));
        assert!(Tensor::from_le_bytes(DType::I32, [1], &[0, 0, 0]).is_err());
    }

    #[test]
    fn saturate_clamps() {
        assert_eq!(DType::I8.saturate(1000), 127);
        assert_eq!(DType::I8.saturate(-1000), -128);
        assert_eq!(DType::I16.saturate(5), 5);
    }
}
