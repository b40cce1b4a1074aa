//! Key and value codecs.
//!
//! Keys are encoded so that byte order equals key order (integers big-endian), as MDBX
//! compares keys bytewise. Values are any serde type, in postcard's compact and stable
//! binary format.

use inference::merkle::H256;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bytes that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("decoding: {0}")]
pub struct CodecError(pub String);

/// A key's bytes (ordered like the key).
pub trait Encode {
    /// The encoded key.
    fn encode(&self) -> Vec<u8>;
}

/// The inverse of [`Encode`].
pub trait Decode: Sized {
    /// Decodes a key.
    fn decode(bytes: &[u8]) -> Result<Self, CodecError>;
}

/// A value's bytes.
pub trait Compress {
    /// The encoded value.
    fn compress(&self) -> Result<Vec<u8>, CodecError>;
}

/// The inverse of [`Compress`].
pub trait Decompress: Sized {
    /// Decodes a value.
    fn decompress(bytes: &[u8]) -> Result<Self, CodecError>;
}

impl<T: Serialize> Compress for T {
    fn compress(&self) -> Result<Vec<u8>, CodecError> {
        postcard::to_stdvec(self).map_err(|e| CodecError(e.to_string()))
    }
}

impl<T: DeserializeOwned> Decompress for T {
    fn decompress(bytes: &[u8]) -> Result<Self, CodecError> {
        postcard::from_bytes(bytes).map_err(|e| CodecError(e.to_string()))
    }
}

fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], CodecError> {
    bytes
        .try_into()
        .map_err(|_| CodecError(format!("a {N}-byte key, got {} bytes", bytes.len())))
}

impl Encode for u64 {
    fn encode(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }
}

impl Decode for u64 {
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        Ok(u64::from_be_bytes(fixed(bytes)?))
    }
}

impl Encode for H256 {
    fn encode(&self) -> Vec<u8> {
        self.0.to_vec()
    }
}

impl Decode for H256 {
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        Ok(H256(fixed(bytes)?))
    }
}

impl Encode for String {
    fn encode(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl Decode for String {
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        String::from_utf8(bytes.to_vec()).map_err(|e| CodecError(e.to_string()))
    }
}

impl<A: Encode, B: Encode> Encode for (A, B) {
    /// The first part must have a fixed width for the order to be lexicographic.
    fn encode(&self) -> Vec<u8> {
        let mut out = self.0.encode();
        out.extend(self.1.encode());
        out
    }
}

impl Decode for (u64, u64) {
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        if bytes.len() != 16 {
            return Err(CodecError(format!(
                "a 16-byte key, got {} bytes",
                bytes.len()
            )));
        }
        Ok((u64::decode(&bytes[..8])?, u64::decode(&bytes[8..])?))
    }
}
