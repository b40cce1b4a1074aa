//! The NumPy `.npy` format (versions 1.0 to 3.0), decoded from and encoded to bytes.
//!
//! Only what the engine exchanges: little-endian signed integers (`i1`, `i2`, `i4`) become
//! tensors; `u1`, `i8` (64-bit) and `f4` arrays can be read or written as raw arrays for
//! conformance data and embeddings. Fortran order is refused with a clear error.

use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor, checked_numel};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Element types an `.npy` file may hold here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpyDType {
    /// `|i1`.
    I8,
    /// `|u1`.
    U8,
    /// `<i2`.
    I16,
    /// `<i4`.
    I32,
    /// `<i8`.
    I64,
    /// `<f4`.
    F32,
}

impl NpyDType {
    fn parse(descr: &str) -> Result<Self> {
        Ok(match descr {
            "|i1" | "<i1" | "i1" => Self::I8,
            "|u1" | "<u1" | "u1" => Self::U8,
            "<i2" => Self::I16,
            "<i4" => Self::I32,
            "<i8" => Self::I64,
            "<f4" => Self::F32,
            other => {
                return Err(Error::Decode(format!(
                    "npy dtype {other:?} is not supported (use little-endian i1, i2 or i4)"
                )));
            }
        })
    }

    fn descr(self) -> &'static str {
        match self {
            Self::I8 => "|i1",
            Self::U8 => "|u1",
            Self::I16 => "<i2",
            Self::I32 => "<i4",
            Self::I64 => "<i8",
            Self::F32 => "<f4",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::I8 | Self::U8 => 1,
            Self::I16 => 2,
            Self::I32 | Self::F32 => 4,
            Self::I64 => 8,
        }
    }
}

/// A decoded `.npy` array: its element type, shape and raw little-endian data.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Element type.
    pub dtype: NpyDType,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Raw little-endian data.
    pub data: Vec<u8>,
}

impl NpyArray {
    /// Converts to a tensor; only `i1`, `i2` and `i4` arrays are tensors.
    pub fn into_tensor(self) -> Result<Tensor> {
        let dtype = match self.dtype {
            NpyDType::I8 => DType::I8,
            NpyDType::I16 => DType::I16,
            NpyDType::I32 => DType::I32,
            other => {
                return Err(Error::Decode(format!(
                    "npy array of {} is not an engine tensor (need i1, i2 or i4)",
                    other.descr()
                )));
            }
        };
        Tensor::from_le_bytes(dtype, self.shape, &self.data)
    }

    /// All elements widened to `i64` (integer arrays only).
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        let d = &self.data;
        Ok(match self.dtype {
            NpyDType::I8 => d.iter().map(|&b| b as i8 as i64).collect(),
            NpyDType::U8 => d.iter().map(|&b| b as i64).collect(),
            NpyDType::I16 => d
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
            NpyDType::I32 => d
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            NpyDType::I64 => d
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            NpyDType::F32 => return Err(Error::Decode("npy: f4 array is not integer".into())),
        })
    }
}

/// Decodes an `.npy` file's bytes.
pub fn decode(bytes: &[u8]) -> Result<NpyArray> {
    let bad = |why: &str| Error::Decode(format!("npy: {why}"));
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("missing the \\x93NUMPY magic (not an .npy file)"));
    }
    let major = bytes[6];
    let (header_len, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated header"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(&format!("unsupported format version {v}"))),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| bad("header is not UTF-8"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| bad("header has no 'descr'"))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran =
        dict_value(header, "fortran_order").ok_or_else(|| bad("header has no 'fortran_order'"))?;
    if fortran.trim() != "False" {
        return Err(bad(
            "Fortran-ordered arrays are not supported (save with C order)",
        ));
    }
    let shape_src = dict_value(header, "shape").ok_or_else(|| bad("header has no 'shape'"))?;
    let shape = shape_src
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(&format!("bad dimension {s:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let dtype = NpyDType::parse(descr)?;
    let n = checked_numel(&shape)?;
    let need = n
        .checked_mul(dtype.size())
        .ok_or_else(|| bad("array too large"))?;
    let data = &bytes[end..];
    if data.len() != need {
        return Err(Error::Decode(format!(
            "npy: shape {shape:?} of {descr} needs {need} data bytes, the file has {} (truncated or corrupt)",
            data.len()
        )));
    }
    Ok(NpyArray {
        dtype,
        shape,
        data: data.to_vec(),
    })
}

/// The raw text of `key`'s value in a Python dict literal header.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let k1 = format!("'{key}'");
    let k2 = format!("\"{key}\"");
    let pos = header
        .find(&k1)
        .map(|p| p + k1.len())
        .or_else(|| header.find(&k2).map(|p| p + k2.len()))?;
    let rest = header[pos..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

/// Encodes raw little-endian data as an `.npy` (version 1.0) file.
pub fn encode_raw(dtype: NpyDType, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = match shape.len() {
        0 => String::new(),
        1 => format!("{},", shape[0]),
        _ => shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': ({dims}), }}",
        dtype.descr()
    );
    // Pad with spaces so the data starts on a 64-byte boundary; the header ends in '\n'.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Encodes a tensor as an `.npy` file.
pub fn encode(t: &Tensor) -> Vec<u8> {
    let dtype = match t.dtype() {
        DType::I8 => NpyDType::I8,
        DType::I16 => NpyDType::I16,
        DType::I32 => NpyDType::I32,
    };
    encode_raw(dtype, t.shape(), &t.to_le_bytes())
}

/// Encodes `f32` values of `shape` as an `.npy` file.
pub fn encode_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    encode_raw(NpyDType::F32, shape, &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_dtype_and_rank() {
        for t in [
            Tensor::from_i8(vec![2, 3], vec![-128, -1, 0, 1, 2, 127]).unwrap(),
            Tensor::from_i16(vec![3], vec![-32768, 0, 32767]).unwrap(),
            Tensor::from_i32(vec![], vec![42]).unwrap(),
            Tensor::from_i32(vec![0, 4], vec![]).unwrap(),
        ] {
            let bytes = encode(&t);
            assert_eq!((bytes.len() - t.to_le_bytes().len()) % 64, 0);
            assert_eq!(decode(&bytes).unwrap().into_tensor().unwrap(), t);
        }
    }

    #[test]
    fn reads_numpy_written_header() {
        // Header as numpy 1.x writes it for np.array([[1, 2]], dtype=np.int8).
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[1, 0]);
        let mut h = "{'descr': '|i1', 'fortran_order': False, 'shape': (1, 2), }".to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(&[1, 2]);
        let t = decode(&b).unwrap().into_tensor().unwrap();
        assert_eq!(t, Tensor::from_i8(vec![1, 2], vec![1, 2]).unwrap());
    }

    #[test]
    fn bad_files_are_clear_errors() {
        assert!(decode(b"hello").is_err());
        let t = Tensor::from_i32(vec![4], vec![1, 2, 3, 4]).unwrap();
        let bytes = encode(&t);
        let err = decode(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let f = encode_f32(&[1], &[1.0]);
        assert!(decode(&f).unwrap().into_tensor().is_err());
        let fortran = String::from_utf8_lossy(&bytes)
            .replace("'fortran_order': False", "'fortran_order': True ");
        assert!(decode(fortran.as_bytes()).is_err());
    }
}
