//! GGUF files (llama.cpp's model container), versions 2 and 3: metadata, tensor infos and
//! dequantization of the tensor data to `f32`.
//!
//! Layout (all little-endian): the magic `GGUF`, a `u32` version, a `u64` tensor count and a
//! `u64` metadata count; the metadata key/values (a key is a string: `u64` length then UTF-8
//! bytes; a value is a `u32` type then the value, arrays being an element type, a `u64`
//! count and the elements); the tensor infos (name, `u32` rank, `u64` dims, `u32` ggml type,
//! `u64` offset); padding to the alignment (`general.alignment`, 32 if absent); then the
//! data section, each tensor at its offset from the section's start.
//!
//! **Dimensions.** GGUF lists a tensor's dims fastest-varying first: `ne[0]` is the length
//! of a row (the innermost axis). [`TensorInfo::shape`] reverses them into the row-major
//! shape used everywhere else in this crate, so a matrix stored with `ne = [cols, rows]`
//! (a linear layer `[in, out]` in GGUF's listing) reads as `[rows, cols]` (`[out, in]`,
//! PyTorch's `weight` layout), and [`Gguf::dequantize`] returns its elements in that order.
//! Quantized blocks never straddle rows (`ne[0]` is a multiple of the block length).
//!
//! Every malformed input (truncated, inconsistent counts, out-of-range offsets, unknown
//! types) is an [`Error::Decode`], never a panic.

use crate::error::{Error, Result};
use std::collections::HashMap;

/// The file magic, `GGUF` as bytes.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// The data section's alignment when the file does not set `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// GGML's largest tensor rank.
pub const MAX_DIMS: usize = 4;
/// Arrays nested deeper than this are refused (the spec allows nesting; files do not use it).
const MAX_ARRAY_DEPTH: usize = 8;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Type 0.
    U8(u8),
    /// Type 1.
    I8(i8),
    /// Type 2.
    U16(u16),
    /// Type 3.
    I16(i16),
    /// Type 4.
    U32(u32),
    /// Type 5.
    I32(i32),
    /// Type 6.
    F32(f32),
    /// Type 7 (one byte, 0 or 1).
    Bool(bool),
    /// Type 8 (UTF-8).
    String(String),
    /// Type 9: elements of one type (the element type is kept for empty arrays).
    Array(ValueType, Vec<Value>),
    /// Type 10.
    U64(u64),
    /// Type 11.
    I64(i64),
    /// Type 12.
    F64(f64),
}

/// The type code of a metadata value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// 0.
    U8,
    /// 1.
    I8,
    /// 2.
    U16,
    /// 3.
    I16,
    /// 4.
    U32,
    /// 5.
    I32,
    /// 6.
    F32,
    /// 7.
    Bool,
    /// 8.
    String,
    /// 9.
    Array,
    /// 10.
    U64,
    /// 11.
    I64,
    /// 12.
    F64,
}

impl ValueType {
    fn from_code(code: u32) -> Result<Self> {
        use ValueType::*;
        Ok(match code {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return Err(decode(format!("unknown metadata value type {code}"))),
        })
    }

    /// The fewest bytes one value of this type takes (to bound array counts by the input).
    fn min_size(self) -> usize {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is an integer of any width that fits `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float, if it is a float or an integer.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a bool, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, if the value is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(_, v) => Some(v),
            _ => None,
        }
    }
}

/// A ggml tensor element type (the codes of `ggml.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 0: `f32`.
    F32,
    /// 1: IEEE half.
    F16,
    /// 2: blocks of 32, `f16` scale `d`, 4-bit `q`: `x = (q - 8) d`.
    Q4_0,
    /// 3: blocks of 32, `f16` scale `d` and minimum `m`, 4-bit `q`: `x = q d + m`.
    Q4_1,
    /// 6: blocks of 32, `f16` scale, 5-bit `q`: `x = (q - 16) d`.
    Q5_0,
    /// 7: blocks of 32, `f16` scale and minimum, 5-bit `q`: `x = q d + m`.
    Q5_1,
    /// 8: blocks of 32, `f16` scale, `i8` `q`: `x = q d`.
    Q8_0,
    /// 12: super-blocks of 256, eight sub-blocks with 6-bit scales and minimums, 4-bit `q`.
    Q4K,
    /// 13: super-blocks of 256, eight sub-blocks with 6-bit scales and minimums, 5-bit `q`.
    Q5K,
    /// 14: super-blocks of 256, sixteen sub-blocks with `i8` scales, 6-bit `q`.
    Q6K,
    /// 30: bfloat16.
    BF16,
    /// Any other code: listed, but its data cannot be dequantized here.
    Other(u32),
}

impl GgmlType {
    /// The type of a ggml type code.
    pub fn from_code(code: u32) -> Self {
        use GgmlType::*;
        match code {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            12 => Q4K,
            13 => Q5K,
            14 => Q6K,
            30 => BF16,
            c => Other(c),
        }
    }

    /// Elements per block and bytes per block; `None` for types this reader does not know
    /// (their data size, and so the file's layout, cannot be checked).
    pub fn block(self) -> Option<(usize, usize)> {
        use GgmlType::*;
        Some(match self {
            F32 => (1, 4),
            F16 | BF16 => (1, 2),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q4K => (256, 144),
            Q5K => (256, 176),
            Q6K => (256, 210),
            Other(_) => return None,
        })
    }
}

/// One tensor's entry in the file's tensor list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dims as GGUF lists them: fastest-varying first (`dims[0]` is the row length).
    pub dims: Vec<u64>,
    /// The element type.
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section (a multiple of the alignment).
    pub offset: u64,
    /// Bytes of data (0 for a type this reader does not know).
    pub byte_len: usize,
}

impl TensorInfo {
    /// The row-major shape, outermost first: `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        // Every dim fits usize: the element count was checked when the file was parsed.
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// The element count.
    pub fn n_elements(&self) -> usize {
        self.dims.iter().map(|&d| d as usize).product()
    }
}

/// A parsed GGUF file borrowing its bytes.
#[derive(Debug)]
pub struct Gguf<'a> {
    version: u32,
    metadata: Vec<(String, Value)>,
    keys: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    names: HashMap<String, usize>,
    alignment: u64,
    data_offset: usize,
    bytes: &'a [u8],
}

fn decode(msg: impl Into<String>) -> Error {
    Error::Decode(format!("gguf: {}", msg.into()))
}

/// A bounds-checked little-endian reader.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                decode(format!(
                    "truncated: {what} needs {n} bytes at offset {}, the file has {}",
                    self.pos,
                    self.bytes.len()
                ))
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// A count of items of at least `min_size` bytes each, bounded by the bytes left (so a
    /// corrupt count cannot ask for a huge allocation).
    fn count(&mut self, min_size: usize, what: &str) -> Result<usize> {
        let n = self.u64(what)?;
        if n > (self.remaining() / min_size.max(1)) as u64 {
            return Err(decode(format!(
                "{what} {n} is more than the {} bytes left can hold",
                self.remaining()
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        let n = usize::try_from(n).map_err(|_| decode(format!("{what}: length {n}")))?;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec()).map_err(|e| decode(format!("{what} is not UTF-8: {e}")))
    }

    fn value(&mut self, ty: ValueType, depth: usize, what: &str) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(what)?[0]),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array(what)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => Value::U32(self.u32(what)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            ValueType::Bool => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(decode(format!("{what}: bool byte {b}"))),
            },
            ValueType::String => Value::String(self.string(what)?),
            ValueType::U64 => Value::U64(self.u64(what)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(decode(format!("{what}: arrays nested too deep")));
                }
                let elem = ValueType::from_code(self.u32(what)?)?;
                let n = self.count(elem.min_size(), what)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1, what)?);
                }
                Value::Array(elem, items)
            }
        })
    }
}

impl<'a> Gguf<'a> {
    /// Parses the header, metadata and tensor infos of a GGUF file (version 2 or 3) and
    /// checks that every tensor's data lies inside the file.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut c = Cursor { bytes, pos: 0 };
        let magic = c.array::<4>("magic")?;
        if magic != MAGIC {
            return Err(decode(format!("bad magic {magic:02x?}, expected \"GGUF\"")));
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            let hint = if version.swap_bytes() <= 3 {
                " (a big-endian file?)"
            } else {
                ""
            };
            return Err(decode(format!(
                "version {version} is not supported (2 or 3){hint}"
            )));
        }
        // A tensor info takes at least 8 (name) + 4 (rank) + 4 (type) + 8 (offset) bytes, a
        // key/value at least 8 (key) + 4 (type) + 1.
        let n_tensors = c.count(24, "tensor count")?;
        let n_kv = c.count(13, "metadata count")?;
        let mut metadata = Vec::with_capacity(n_kv);
        let mut keys = HashMap::with_capacity(n_kv);
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key {i}"))?;
            let ty = ValueType::from_code(c.u32(&format!("type of {key:?}"))?)?;
            let value = c.value(ty, 0, &format!("metadata {key:?}"))?;
            if keys.insert(key.clone(), metadata.len()).is_some() {
                return Err(decode(format!("metadata key {key:?} appears twice")));
            }
            metadata.push((key, value));
        }
        let alignment = match metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .map(|(_, v)| v)
        {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 30 => a,
                _ => return Err(decode(format!("general.alignment {v:?}"))),
            },
        };
        let mut tensors = Vec::with_capacity(n_tensors);
        let mut names = HashMap::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let name = c.string(&format!("tensor {i} name"))?;
            let rank = c.u32(&format!("rank of {name:?}"))? as usize;
            if rank > MAX_DIMS {
                return Err(decode(format!(
                    "tensor {name:?} has rank {rank} (at most {MAX_DIMS})"
                )));
            }
            let dims = (0..rank)
                .map(|_| c.u64(&format!("dims of {name:?}")))
                .collect::<Result<Vec<_>>>()?;
            let ggml_type = GgmlType::from_code(c.u32(&format!("type of {name:?}"))?);
            let offset = c.u64(&format!("offset of {name:?}"))?;
            if offset % alignment != 0 {
                return Err(decode(format!(
                    "tensor {name:?} offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            let n = dims
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
                .ok_or_else(|| decode(format!("tensor {name:?} dims {dims:?} overflow")))?;
            let byte_len = match ggml_type.block() {
                None => 0,
                Some((block, size)) => {
                    let row = dims.first().copied().unwrap_or(1) as usize;
                    if !row.is_multiple_of(block) {
                        return Err(decode(format!(
                            "tensor {name:?} ({ggml_type:?}): rows of {row} are not whole \
                             blocks of {block}"
                        )));
                    }
                    (n / block)
                        .checked_mul(size)
                        .ok_or_else(|| decode(format!("tensor {name:?} size overflows")))?
                }
            };
            if names.insert(name.clone(), tensors.len()).is_some() {
                return Err(decode(format!("tensor {name:?} appears twice")));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                byte_len,
            });
        }
        let data_offset = (c.pos as u64)
            .checked_next_multiple_of(alignment)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or_else(|| decode("data offset overflows"))?;
        let data_len = bytes.len().saturating_sub(data_offset);
        for t in &tensors {
            let end = t.offset.checked_add(t.byte_len as u64);
            if end.is_none_or(|e| e > data_len as u64) {
                return Err(decode(format!(
                    "truncated: tensor {:?} needs bytes {}..{} of the data section, which \
                     has {data_len}",
                    t.name,
                    t.offset,
                    t.offset as u128 + t.byte_len as u128
                )));
            }
        }
        Ok(Self {
            version,
            metadata,
            keys,
            tensors,
            names,
            alignment,
            data_offset,
            bytes,
        })
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data section's alignment.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Byte offset of the data section in the file.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// The metadata value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.keys.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| decode(format!("metadata {key:?} is missing")))
    }

    /// The metadata `key` as an unsigned integer (any integer type); an error if absent or
    /// of another type.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| decode(format!("metadata {key:?} is {v:?}, expected an integer")))
    }

    /// The metadata `key` as a float (any float or integer type).
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let v = self.require(key)?;
        v.as_f64()
            .ok_or_else(|| decode(format!("metadata {key:?} is {v:?}, expected a number")))
    }

    /// The metadata `key` as a string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str()
            .ok_or_else(|| decode(format!("metadata {key:?} is not a string")))
    }

    /// The metadata `key` as an array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let v = self.require(key)?;
        v.as_array()
            .and_then(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
            .ok_or_else(|| decode(format!("metadata {key:?} is not an array of strings")))
    }

    /// The metadata `key` as an array of signed integers (any integer element type).
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        let v = self.require(key)?;
        v.as_array()
            .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
            .ok_or_else(|| decode(format!("metadata {key:?} is not an array of integers")))
    }

    /// The tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of tensor `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.names.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw data of tensor `info` (in bounds: checked by [`Gguf::parse`]).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &'a [u8] {
        let start = self.data_offset + info.offset as usize;
        &self.bytes[start..start + info.byte_len]
    }

    /// Tensor `name` dequantized to `f32`, row-major (see the module docs), with its
    /// row-major shape.
    pub fn dequantize(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let info = self
            .tensor(name)
            .ok_or_else(|| decode(format!("tensor {name:?} is missing")))?;
        let data = dequantize(info.ggml_type, self.tensor_bytes(info), info.n_elements()).map_err(
            |e| match e {
                Error::Decode(m) => Error::Decode(format!("{m} (tensor {name:?})")),
                e => e,
            },
        )?;
        Ok((data, info.shape()))
    }

    /// Tensor `name` dequantized to `f32`, checked to have the row-major shape `shape`.
    pub fn dequantize_shaped(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (data, got) = self.dequantize(name)?;
        if got != shape {
            return Err(Error::Shape(format!(
                "gguf tensor {name:?} is {got:?}, expected {shape:?}"
            )));
        }
        Ok(data)
    }
}

/// GPT-2's byte-to-character table: printable bytes map to themselves, the others to
/// `U+0100..`, so that every byte string is spelled in visible characters.
fn byte_level_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
        *slot = if printable {
            char::from(b as u8)
        } else {
            next += 1;
            char::from_u32(next - 1).unwrap_or('\0')
        };
    }
    table
}

impl Gguf<'_> {
    /// The tokenizer the metadata describes, built as `transformers` builds it from a GGUF
    /// for `tokenizer.ggml.model = "gpt2"` (a `GPT2Tokenizer`, `byte_level_tokenizer` in
    /// `integrations/gguf/gguf_tokenizer_mapping.py`): a byte-level BPE over
    /// `tokenizer.ggml.tokens` (ids = positions) and `tokenizer.ggml.merges`, GPT-2's
    /// `ByteLevel` pre-tokenizer (its split regex, no prefix space) and decoder, no
    /// normalizer and no post-processor (so no BOS/EOS is added, whatever
    /// `tokenizer.ggml.add_bos_token` says: callers add special ids themselves).
    ///
    /// Tokens of type 3 (control, e.g. `<|im_start|>`) become special added tokens and
    /// tokens of type 4 (user-defined) plain added tokens, both matched whole in the text
    /// before splitting. A token spelled outside the byte-level alphabet is re-spelled from
    /// its UTF-8 bytes, as `transformers` does.
    ///
    /// `tokenizer.ggml.pre` is not consulted: `transformers` has no split of its own for
    /// `"smollm"` (SmolLM2) and keeps GPT-2's. llama.cpp (and SmolLM2's `tokenizer.json`)
    /// split every `\p{N}` character off first. SmolLM2's vocabulary merges no ASCII digit
    /// with anything, so the two agree on ASCII numbers; they can differ on other numerals
    /// (`" ²"` is `ĠÂ` + `²` here, `Ġ` + `Â²` there).
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer> {
        use tokenizers::models::bpe::BPE;
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        use tokenizers::{AddedToken, Tokenizer};

        let model = self.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(decode(format!(
                "tokenizer.ggml.model {model:?} is not supported (only \"gpt2\" byte-level BPE)"
            )));
        }
        let tokens = self.get_str_array("tokenizer.ggml.tokens")?;
        let merges = self.get_str_array("tokenizer.ggml.merges")?;
        let types = match self.get("tokenizer.ggml.token_type") {
            Some(_) => self.get_i64_array("tokenizer.ggml.token_type")?,
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(decode(format!(
                "{} token types for {} tokens",
                types.len(),
                tokens.len()
            )));
        }
        let alphabet = byte_level_alphabet();
        let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
        let mut vocab = tokenizers::models::bpe::Vocab::with_capacity(tokens.len());
        for (id, &t) in tokens.iter().enumerate() {
            let spelled = if in_alphabet(t) {
                t.to_string()
            } else {
                t.bytes().map(|b| alphabet[b as usize]).collect()
            };
            vocab.insert(spelled, id as u32);
        }
        let merges = merges
            .iter()
            .map(|m| {
                let mut parts = m.split(' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(a), Some(b), None) => Ok((a.to_string(), b.to_string())),
                    _ => Err(decode(format!("merge {m:?} is not two tokens"))),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| decode(format!("BPE: {e}")))?;
        let mut tok = Tokenizer::new(bpe);
        tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        tok.with_decoder(Some(ByteLevel::default()));
        let added = |kind: i64, special: bool| -> Vec<AddedToken> {
            tokens
                .iter()
                .zip(&types)
                .filter(|&(t, &ty)| ty == kind && (!special || in_alphabet(t)))
                .map(|(t, _)| AddedToken::from(t.to_string(), special).normalized(false))
                .collect()
        };
        tok.add_special_tokens(&added(3, true));
        tok.add_tokens(&added(4, false));
        Ok(tok)
    }
}

/// IEEE half to `f32` (exact: every half is a float).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        // Subnormal: man * 2^-24, exact in f32.
        (0, m) => {
            let v = m as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn half(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// The 6-bit scale and minimum of sub-block `j` of a Q4_K/Q5_K super-block (ggml's
/// `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (d, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (d as f32, m as f32)
}

/// Dequantizes `n` elements of type `ty` from `bytes` (exactly the bytes `n` elements take)
/// as ggml's `dequantize_row_*` does, in `f32` arithmetic.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let (block, size) = ty
        .block()
        .ok_or_else(|| decode(format!("cannot dequantize ggml type {ty:?}")))?;
    if !n.is_multiple_of(block) || bytes.len() != n / block * size {
        return Err(decode(format!(
            "{n} elements of {ty:?} take {} bytes, got {}",
            n / block * size,
            bytes.len()
        )));
    }
    let mut y = vec![0f32; n];
    let blocks = bytes.chunks_exact(size).zip(y.chunks_exact_mut(block));
    match ty {
        GgmlType::F32 => {
            blocks.for_each(|(b, y)| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        GgmlType::F16 => blocks.for_each(|(b, y)| y[0] = half(b, 0)),
        GgmlType::BF16 => blocks.for_each(|(b, y)| {
            y[0] = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
        }),
        GgmlType::Q4_0 => blocks.for_each(|(b, y)| {
            let d = half(b, 0);
            for (j, &q) in b[2..18].iter().enumerate() {
                y[j] = ((q & 0xf) as i32 - 8) as f32 * d;
                y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
            }
        }),
        GgmlType::Q4_1 => blocks.for_each(|(b, y)| {
            let (d, m) = (half(b, 0), half(b, 2));
            for (j, &q) in b[4..20].iter().enumerate() {
                y[j] = (q & 0xf) as f32 * d + m;
                y[j + 16] = (q >> 4) as f32 * d + m;
            }
        }),
        GgmlType::Q5_0 => blocks.for_each(|(b, y)| {
            let d = half(b, 0);
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            for (j, &q) in b[6..22].iter().enumerate() {
                let h0 = ((qh >> j) << 4) & 0x10;
                let h1 = (qh >> (j + 12)) & 0x10;
                y[j] = (((q & 0xf) as u32 | h0) as i32 - 16) as f32 * d;
                y[j + 16] = (((q >> 4) as u32 | h1) as i32 - 16) as f32 * d;
            }
        }),
        GgmlType::Q5_1 => blocks.for_each(|(b, y)| {
            let (d, m) = (half(b, 0), half(b, 2));
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            for (j, &q) in b[8..24].iter().enumerate() {
                let h0 = ((qh >> j) << 4) & 0x10;
                let h1 = (qh >> (j + 12)) & 0x10;
                y[j] = ((q & 0xf) as u32 | h0) as f32 * d + m;
                y[j + 16] = ((q >> 4) as u32 | h1) as f32 * d + m;
            }
        }),
        GgmlType::Q8_0 => blocks.for_each(|(b, y)| {
            let d = half(b, 0);
            for (y, &q) in y.iter_mut().zip(&b[2..34]) {
                *y = q as i8 as f32 * d;
            }
        }),
        GgmlType::Q4K => blocks.for_each(|(b, y)| {
            let (d, dmin) = (half(b, 0), half(b, 2));
            let scales = &b[4..16];
            for (j, (q, y)) in b[16..144]
                .chunks_exact(32)
                .zip(y.chunks_exact_mut(64))
                .enumerate()
            {
                let (sc1, m1) = scale_min_k4(2 * j, scales);
                let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
                let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
                for l in 0..32 {
                    y[l] = d1 * (q[l] & 0xf) as f32 - m1;
                    y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
                }
            }
        }),
        GgmlType::Q5K => blocks.for_each(|(b, y)| {
            let (d, dmin) = (half(b, 0), half(b, 2));
            let scales = &b[4..16];
            let qh = &b[16..48];
            for (j, (q, y)) in b[48..176]
                .chunks_exact(32)
                .zip(y.chunks_exact_mut(64))
                .enumerate()
            {
                let (sc1, m1) = scale_min_k4(2 * j, scales);
                let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
                let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
                let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
                for l in 0..32 {
                    let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                    let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                    y[l] = d1 * ((q[l] & 0xf) + h1) as f32 - m1;
                    y[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
                }
            }
        }),
        GgmlType::Q6K => blocks.for_each(|(b, y)| {
            let d = half(b, 208);
            for (n, y) in y.chunks_exact_mut(128).enumerate() {
                let ql = &b[64 * n..64 * n + 64];
                let qh = &b[128 + 32 * n..128 + 32 * n + 32];
                let sc = &b[192 + 8 * n..192 + 8 * n + 8];
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
                    let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                    let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                    let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                    y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                    y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                    y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                    y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                }
            }
        }),
        GgmlType::Other(_) => return Err(decode(format!("cannot dequantize ggml type {ty:?}"))),
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes GGUF bytes (little-endian) for tests.
    #[derive(Default)]
    struct Writer(Vec<u8>);

    impl Writer {
        fn u32(&mut self, v: u32) -> &mut Self {
            self.0.extend(v.to_le_bytes());
            self
        }
        fn u64(&mut self, v: u64) -> &mut Self {
            self.0.extend(v.to_le_bytes());
            self
        }
        fn str(&mut self, s: &str) -> &mut Self {
            self.u64(s.len() as u64);
            self.0.extend(s.as_bytes());
            self
        }
        fn bytes(&mut self, b: &[u8]) -> &mut Self {
            self.0.extend(b);
            self
        }
        fn pad(&mut self, align: usize) -> &mut Self {
            while !self.0.len().is_multiple_of(align) {
                self.0.push(0);
            }
            self
        }
    }

    /// A version-`version` file with one of every metadata type, `general.alignment` =
    /// `align` (if not 32), an F32 `[2, 3]` matrix and a Q8_0 vector of 32.
    fn sample(version: u32, align: u64) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes(b"GGUF").u32(version).u64(2);
        let kv = 16 + u64::from(align != 32);
        w.u64(kv);
        w.str("u8").u32(0).bytes(&[200]);
        w.str("i8").u32(1).bytes(&[0xfe]);
        w.str("u16").u32(2).bytes(&[1, 2]);
        w.str("i16").u32(3).bytes(&(-300i16).to_le_bytes());
        w.str("u32").u32(4).u32(70000);
        w.str("i32").u32(5).bytes(&(-5i32).to_le_bytes());
        w.str("f32").u32(6).bytes(&1.5f32.to_le_bytes());
        w.str("bool").u32(7).bytes(&[1]);
        w.str("string").u32(8).str("héllo");
        w.str("u64").u32(10).u64(1 << 40);
        w.str("i64").u32(11).bytes(&(-7i64).to_le_bytes());
        w.str("f64").u32(12).bytes(&0.25f64.to_le_bytes());
        w.str("strings")
            .u32(9)
            .u32(8)
            .u64(3)
            .str("a")
            .str("")
            .str("Ġb c");
        w.str("ints").u32(9).u32(4).u64(2).u32(3).u32(u32::MAX);
        w.str("empty").u32(9).u32(6).u64(0);
        w.str("nested")
            .u32(9)
            .u32(9)
            .u64(1)
            .u32(0)
            .u64(2)
            .bytes(&[4, 5]);
        if align != 32 {
            w.str("general.alignment").u32(4).u32(align as u32);
        }
        w.str("m").u32(2).u64(3).u64(2).u32(0).u64(0);
        w.str("v").u32(1).u64(32).u32(8).u64(align);
        w.pad(align as usize);
        let mut m = Vec::new();
        for v in [1.0f32, 2.0, 3.0, -4.0, 5.5, 6.0] {
            m.extend(v.to_le_bytes());
        }
        w.bytes(&m).pad(align as usize);
        w.bytes(&[0x00, 0x3c]); // d = 1.0
        w.bytes(&(0..32).map(|i| (i as i8 - 16) as u8).collect::<Vec<_>>());
        w.0
    }

    #[test]
    fn parses_every_metadata_type_and_tensor() {
        for (version, align) in [(2, 32), (3, 32), (3, 64)] {
            let bytes = sample(version, align);
            let g = Gguf::parse(&bytes).unwrap();
            assert_eq!((g.version(), g.alignment()), (version, align));
            assert_eq!(g.data_offset() % align as usize, 0);
            assert_eq!(g.get("u8"), Some(&Value::U8(200)));
            assert_eq!(g.get("i8"), Some(&Value::I8(-2)));
            assert_eq!(g.get("u16"), Some(&Value::U16(0x201)));
            assert_eq!(g.get("i16"), Some(&Value::I16(-300)));
            assert_eq!(g.get_u64("u32").unwrap(), 70000);
            assert_eq!(g.get("i32").and_then(Value::as_i64), Some(-5));
            assert!(g.get_u64("i32").is_err());
            assert_eq!(g.get_f64("f32").unwrap(), 1.5);
            assert_eq!(g.get("bool").and_then(Value::as_bool), Some(true));
            assert_eq!(g.get_str("string").unwrap(), "héllo");
            assert_eq!(g.get_u64("u64").unwrap(), 1 << 40);
            assert_eq!(g.get("i64"), Some(&Value::I64(-7)));
            assert_eq!(g.get_f64("f64").unwrap(), 0.25);
            assert_eq!(g.get_str_array("strings").unwrap(), ["a", "", "Ġb c"]);
            assert_eq!(g.get_i64_array("ints").unwrap(), [3, u32::MAX as i64]);
            assert_eq!(g.get("empty"), Some(&Value::Array(ValueType::F32, vec![])));
            assert_eq!(
                g.get("nested"),
                Some(&Value::Array(
                    ValueType::Array,
                    vec![Value::Array(
                        ValueType::U8,
                        vec![Value::U8(4), Value::U8(5)]
                    )]
                ))
            );
            assert!(g.get("missing").is_none() && g.get_str("missing").is_err());
            let m = g.tensor("m").unwrap();
            assert_eq!((m.dims.as_slice(), m.shape()), (&[3, 2][..], vec![2, 3]));
            assert_eq!(
                g.dequantize("m").unwrap(),
                (vec![1.0, 2.0, 3.0, -4.0, 5.5, 6.0], vec![2, 3])
            );
            let v: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
            assert_eq!(g.dequantize_shaped("v", &[32]).unwrap(), v);
            assert!(matches!(
                g.dequantize_shaped("v", &[1, 32]),
                Err(Error::Shape(_))
            ));
            assert!(matches!(g.dequantize("nope"), Err(Error::Decode(_))));
        }
    }

    #[test]
    fn every_truncation_is_a_decode_error() {
        let bytes = sample(3, 32);
        for cut in 0..bytes.len() {
            match Gguf::parse(&bytes[..cut]) {
                Err(Error::Decode(_)) => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn corrupt_files_are_decode_errors() {
        let good = sample(3, 32);
        let corrupt = |at: usize, b: &[u8]| {
            let mut v = good.clone();
            v[at..at + b.len()].copy_from_slice(b);
            Gguf::parse(&v).map(|_| ())
        };
        let is_decode = |r: Result<()>| matches!(r, Err(Error::Decode(_)));
        assert!(is_decode(corrupt(0, b"GGUG")));
        assert!(is_decode(corrupt(4, &1u32.to_le_bytes())));
        assert!(is_decode(corrupt(4, &3u32.to_be_bytes())));
        assert!(is_decode(corrupt(8, &u64::MAX.to_le_bytes())));
        assert!(is_decode(corrupt(16, &(1u64 << 60).to_le_bytes())));
        // The first key's length, then its value type.
        assert!(is_decode(corrupt(24, &u64::MAX.to_le_bytes())));
        assert!(is_decode(corrupt(34, &13u32.to_le_bytes())));
        // A non-UTF-8 key, a bool that is neither 0 nor 1.
        assert!(is_decode(corrupt(32, &[0xff])));
        let bool_at = good.windows(4).position(|w| w == b"bool").unwrap() + 8;
        assert!(is_decode(corrupt(bool_at, &[2])));
        // Tensor "v": rank 5, an offset past the end, a misaligned offset, a row of 31.
        let v_at = good
            .windows(9)
            .position(|w| w == b"\x01\0\0\0\0\0\0\0v")
            .unwrap()
            + 9;
        assert!(is_decode(corrupt(v_at, &5u32.to_le_bytes())));
        assert!(is_decode(corrupt(v_at + 16, &4096u64.to_le_bytes())));
        assert!(is_decode(corrupt(v_at + 16, &33u64.to_le_bytes())));
        assert!(is_decode(corrupt(v_at + 4, &31u64.to_le_bytes())));
        // An unknown tensor type still parses, but cannot be dequantized.
        let mut v = good.clone();
        v[v_at + 12..v_at + 16].copy_from_slice(&99u32.to_le_bytes());
        let g = Gguf::parse(&v).unwrap();
        assert_eq!(g.tensor("v").unwrap().ggml_type, GgmlType::Other(99));
        assert!(matches!(g.dequantize("v"), Err(Error::Decode(_))));
        // A dims product that overflows.
        let m_at = good
            .windows(9)
            .position(|w| w == b"\x01\0\0\0\0\0\0\0m")
            .unwrap()
            + 9;
        assert!(is_decode(corrupt(m_at + 4, &u64::MAX.to_le_bytes())));
    }

    /// 64-bit FNV-1a of the values' little-endian bytes.
    fn fnv(values: &[f32]) -> u64 {
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
    }

    #[test]
    fn dequantization_matches_gguf_py() {
        // Two blocks of LCG bytes (seed `s`) with these f16 scales written at these block
        // offsets (first block, second block); expected: FNV-1a of `gguf.quants.dequantize`'s
        // output (gguf-py 0.19.0) and its first two values.
        type Case = (GgmlType, u64, &'static [(usize, u16, u16)], u64, [f32; 2]);
        let cases: [Case; 8] = [
            (
                GgmlType::Q4_0,
                1,
                &[(0, 0x224c, 0xa4b9)],
                0xc198a926012843d6,
                [-0.036895752, -0.073791504],
            ),
            (
                GgmlType::Q4_1,
                2,
                &[(0, 0x224c, 0xa4b9), (2, 0xb800, 0x3a00)],
                0xee3df0775efbb899,
                [-0.43850708, -0.5],
            ),
            (
                GgmlType::Q5_0,
                3,
                &[(0, 0xa7f0, 0x29f4)],
                0x08ace7ee04351b3c,
                [0.49609375, 0.1550293],
            ),
            (
                GgmlType::Q5_1,
                4,
                &[(0, 0x2560, 0xa808), (2, 0xb548, 0x37ec)],
                0x22abcac2e72cdd2b,
                [0.19482422, 0.08984375],
            ),
            (
                GgmlType::Q8_0,
                5,
                &[(0, 0x1f45, 0xa174)],
                0xd58daf766311999a,
                [-0.32656097, 0.560833],
            ),
            (
                GgmlType::Q4K,
                6,
                &[(0, 0x1c4d, 0x9e74), (2, 0x16f7, 0x9939)],
                0x6f1e248cc3c03062,
                [1.1484823, 1.5852804],
            ),
            (
                GgmlType::Q5K,
                7,
                &[(0, 0x1a59, 0x9cc3), (2, 0x135f, 0x9588)],
                0xfadb46c344039595,
                [-0.05308771, 0.021298885],
            ),
            (
                GgmlType::Q6K,
                8,
                &[(208, 0x17c8, 0x99d6)],
                0x12e9652d3aac78fb,
                [-1.1968231, -0.35904694],
            ),
        ];
        for (ty, seed, scales, hash, first) in cases {
            let (block, size) = ty.block().unwrap();
            let mut x = seed;
            let mut b: Vec<u8> = (0..2 * size)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 56) as u8
                })
                .collect();
            for &(at, first_block, second_block) in scales {
                b[at..at + 2].copy_from_slice(&first_block.to_le_bytes());
                b[size + at..size + at + 2].copy_from_slice(&second_block.to_le_bytes());
            }
            let y = dequantize(ty, &b, 2 * block).unwrap();
            assert_eq!(y[..2], first, "{ty:?}");
            assert_eq!(fnv(&y), hash, "{ty:?}");
            assert!(dequantize(ty, &b[1..], 2 * block).is_err());
        }
    }

    #[test]
    fn half_conversion_matches_numpy() {
        // numpy's float16 -> float32 of every non-NaN half, FNV-1a of the results.
        let all: Vec<f32> = (0..=u16::MAX)
            .map(f16_to_f32)
            .filter(|v| !v.is_nan())
            .collect();
        assert_eq!(all.len(), 63490);
        assert_eq!(fnv(&all), 0xa7a575fd4882f925);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
    }

    #[test]
    fn byte_level_alphabet_is_gpt2s() {
        let a = byte_level_alphabet();
        assert_eq!(
            (a[b'!' as usize], a[b' ' as usize], a[b'\n' as usize]),
            ('!', 'Ġ', 'Ċ')
        );
        assert_eq!((a[0], a[0xad], a[0xff]), ('Ā', 'Ń', 'ÿ'));
        let mut sorted = a.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
    }
}
