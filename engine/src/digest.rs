//! Content digests (`sha256:<hex>`): parsing, computing, and the short forms docker prints.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A `sha256:<64 hex>` content digest. Other algorithms are refused: every blob we store is sha256-addressed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

/// A string that is not a `sha256:<64 lowercase hex>` digest.
#[derive(Debug, thiserror::Error)]
#[error("invalid digest `{0}`: expected sha256:<64 lowercase hex characters>")]
pub struct InvalidDigest(pub String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest { hex: hex::encode(Sha256::digest(bytes)) }
    }

    /// Builds a digest from its 64 hex characters (no `sha256:` prefix).
    pub fn from_hex(hex: &str) -> Result<Digest, InvalidDigest> {
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Digest { hex: hex.to_owned() })
        } else {
            Err(InvalidDigest(hex.to_owned()))
        }
    }

    /// The 64 hex characters.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The 12-character form docker prints in tables.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl FromStr for Digest {
    type Err = InvalidDigest;

    fn from_str(s: &str) -> Result<Digest, InvalidDigest> {
        match s.strip_prefix("sha256:") {
            Some(hex) => Digest::from_hex(hex).map_err(|_| InvalidDigest(s.to_owned())),
            None => Err(InvalidDigest(s.to_owned())),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A writer (or reader) adapter that hashes everything passing through it and counts the bytes.
pub struct Hashing<T> {
    inner: T,
    hasher: Sha256,
    bytes: u64,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Hashing<T> {
        Hashing { inner, hasher: Sha256::new(), bytes: 0 }
    }

    /// The digest and byte count of what went through, and the inner value back.
    pub fn finish(self) -> (Digest, u64, T) {
        let hex = hex::encode(self.hasher.finalize());
        (Digest { hex }, self.bytes, self.inner)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let d = Digest::of(b"");
        assert_eq!(d.to_string(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(d.to_string().parse::<Digest>().ok(), Some(d.clone()));
        assert_eq!(d.short(), "e3b0c44298fc");
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!("md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse::<Digest>().is_err());
        assert!(Digest::from_hex(&"E".repeat(64)).is_err());
    }

    #[test]
    fn hashing_writer_matches_of() {
        let mut w = Hashing::new(Vec::new());
        w.write_all(b"hello ").and_then(|_| w.write_all(b"world")).ok();
        let (d, n, inner) = w.finish();
        assert_eq!(d, Digest::of(b"hello world"));
        assert_eq!(n, 11);
        assert_eq!(inner, b"hello world");
    }
}
