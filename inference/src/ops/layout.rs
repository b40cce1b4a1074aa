//! Data movement: `reshape`, `transpose`, `concat`, `slice` and `embedding` (row gather).
//! None of them computes a value; they only move elements, for every dtype alike.

use crate::error::{Error, Result};
use crate::tensor::{Tensor, TensorData};

/// Applies a dtype-generic body to the typed storage of a tensor, rebuilding the storage.
macro_rules! per_dtype {
    ($data:expr, |$v:ident| $body:expr) => {
        match $data {
            TensorData::I8($v) => TensorData::I8($body),
            TensorData::I16($v) => TensorData::I16($body),
            TensorData::I32($v) => TensorData::I32($body),
        }
    };
}

/// `reshape`: same elements, new shape.
pub fn reshape(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    x.clone().reshaped(shape.to_vec())
}

/// `transpose`: output axis `i` is input axis `perm[i]`.
pub fn transpose(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let shape = x.shape();
    let r = shape.len();
    if perm.len() != r {
        return Err(Error::Param(format!(
            "transpose: perm {perm:?} for rank {r}"
        )));
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let mut in_strides = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * shape[i + 1];
    }
    // The input stride of each output axis, walked with an odometer.
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let numel = x.numel();
    let mut src = Vec::with_capacity(numel);
    let mut idx = vec![0usize; r];
    let mut off = 0usize;
    for _ in 0..numel {
        src.push(off);
        for ax in (0..r).rev() {
            idx[ax] += 1;
            off += strides[ax];
            if idx[ax] < out_shape[ax] {
                break;
            }
            off -= strides[ax] * idx[ax];
            idx[ax] = 0;
        }
    }
    let data = per_dtype!(x.data(), |v| src.iter().map(|&i| v[i]).collect());
    Tensor::new(out_shape, data)
}

/// `concat` along `axis`.
pub fn concat(xs: &[&Tensor], axis: usize) -> Result<Tensor> {
    let first = xs
        .first()
        .ok_or_else(|| Error::Param("concat: no operands".into()))?;
    let shape = first.shape();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out_shape = shape.to_vec();
    out_shape[axis] = xs.iter().map(|t| t.shape()[axis]).sum();
    let mut data = TensorData::zeros(first.dtype(), out_shape.iter().product());
    let mut pos = 0usize;
    let row = out_shape[axis] * inner;
    for t in xs {
        let chunk = t.shape()[axis] * inner;
        match (&mut data, t.data()) {
            (TensorData::I8(d), TensorData::I8(s)) => copy_blocks(d, s, outer, chunk, row, pos),
            (TensorData::I16(d), TensorData::I16(s)) => copy_blocks(d, s, outer, chunk, row, pos),
            (TensorData::I32(d), TensorData::I32(s)) => copy_blocks(d, s, outer, chunk, row, pos),
            _ => return Err(Error::Param("concat: operands differ in dtype".into())),
        }
        pos += chunk;
    }
    Tensor::new(out_shape, data)
}

fn copy_blocks<T: Copy>(
    dst: &mut [T],
    src: &[T],
    outer: usize,
    chunk: usize,
    row: usize,
    pos: usize,
) {
    for o in 0..outer {
        dst[o * row + pos..o * row + pos + chunk].copy_from_slice(&src[o * chunk..(o + 1) * chunk]);
    }
}

/// `slice`: `x[.., start..end, ..]` along `axis`.
pub fn slice(x: &Tensor, axis: usize, start: usize, end: usize) -> Result<Tensor> {
    let shape = x.shape();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let row = shape[axis] * inner;
    let mut out_shape = shape.to_vec();
    out_shape[axis] = end - start;
    let data = per_dtype!(x.data(), |v| {
        let mut o = Vec::with_capacity(outer * (end - start) * inner);
        for b in 0..outer {
            o.extend_from_slice(&v[b * row + start * inner..b * row + end * inner]);
        }
        o
    });
    Tensor::new(out_shape, data)
}

/// `embedding`: row `indices[i]` of `table` for every index; a row of zeros for an index
/// outside `[0, V)`.
pub fn embedding(table: &Tensor, indices: &Tensor) -> Result<Tensor> {
    let idx = indices.as_i32("embedding indices")?;
    let (v, d) = (table.shape()[0], table.shape()[1]);
    let mut out_shape = indices.shape().to_vec();
    out_shape.push(d);
    let data = per_dtype!(table.data(), |t| {
        let mut o = vec![Default::default(); idx.len() * d];
        for (i, &r) in idx.iter().enumerate() {
            if r >= 0 && (r as usize) < v {
                let r = r as usize;
                o[i * d..(i + 1) * d].copy_from_slice(&t[r * d..(r + 1) * d]);
            }
        }
        o
    });
    Tensor::new(out_shape, data)
}
