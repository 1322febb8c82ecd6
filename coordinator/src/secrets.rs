//! Secrets at rest: project environment variables and context values are stored encrypted with the coordinator's
//! key, and shown to people only as [`masked`] text.
//!
//! The key is 32 random bytes in a file (default `<data dir>/secret.key`) created with mode 0600 on first start;
//! a key file readable by group or others is refused, since anyone who reads it reads every secret. Values are
//! sealed with XChaCha20-Poly1305 (random 24-byte nonces, so no nonce bookkeeping) and stored as text:
//!
//! ```text
//! v1:<key id>:<base64 of nonce ‖ ciphertext ‖ tag>
//! ```
//!
//! The key id (first 8 hex digits of the key's SHA-256) is bound into the authentication as associated data, so a
//! value sealed by another key, or edited in the database, fails to decrypt with an error — never as garbage.
//!
//! Rotation: [`Keyring`] holds the current key and older ones. It encrypts with the current key and decrypts with
//! whichever key a value names, so old values stay readable while [`Keyring::rotate`] re-seals them one by one;
//! once none names an old key, its file can be deleted.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Bytes of key material in a key file.
pub const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
const VERSION: &str = "v1";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// What went wrong loading a key or opening a sealed value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot create secret key file {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error(
        "secret key file {path} has mode {mode:04o}: others can read every secret; run `chmod 600 {path}` \
         (and check who copied it)"
    )]
    WidePermissions { path: PathBuf, mode: u32 },
    #[error("secret key file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("secret key file {path} holds {len} bytes, not {KEY_BYTES}: it is damaged or not a Drydock key")]
    BadKeyLength { path: PathBuf, len: usize },
    #[error("secret key file {path} already exists; move it away first to create a new key")]
    AlreadyExists { path: PathBuf },
    #[error("stored secret is not in the `v1:<key id>:<base64>` form: {reason}")]
    Malformed { reason: &'static str },
    #[error("stored secret has format version {version:?}, which this coordinator does not know; upgrade it")]
    UnsupportedVersion { version: String },
    #[error(
        "stored secret was sealed with key {key_id}, which is not loaded; give the coordinator that key \
         (as an old key during rotation) or set the secret again"
    )]
    UnknownKey { key_id: String },
    #[error("stored secret failed authentication with key {key_id}: it was altered or damaged; set it again")]
    Tampered { key_id: String },
}

/// One 32-byte XChaCha20-Poly1305 key and its id.
#[derive(Clone)]
pub struct SecretKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl SecretKey {
    /// Loads the key at `path`, or creates one there (mode 0600, written to a temporary file then linked into
    /// place, so a reader never sees a partial key and two starts at once end with the same key).
    pub fn load_or_create(path: &Path) -> Result<SecretKey, SecretError> {
        match SecretKey::load(path) {
            Err(SecretError::Read { source, .. }) if source.kind() == ErrorKind::NotFound => {}
            other => return other,
        }
        match SecretKey::create(path) {
            Err(SecretError::AlreadyExists { .. }) => SecretKey::load(path),
            other => other,
        }
    }

    /// Loads an existing key file, refusing one that group or others may read or write.
    pub fn load(path: &Path) -> Result<SecretKey, SecretError> {
        let read_err = |source| SecretError::Read { path: path.to_path_buf(), source };
        let file = OpenOptions::new().read(true).custom_flags(libc_nofollow()).open(path).map_err(read_err)?;
        let metadata = file.metadata().map_err(read_err)?;
        if !metadata.is_file() {
            return Err(SecretError::NotAFile { path: path.to_path_buf() });
        }
        let mode = metadata.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretError::WidePermissions { path: path.to_path_buf(), mode });
        }
        let mut bytes = Vec::with_capacity(KEY_BYTES);
        file.take(KEY_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(read_err)?;
        let key: [u8; KEY_BYTES] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SecretError::BadKeyLength { path: path.to_path_buf(), len: bytes.len() })?;
        Ok(SecretKey::from_bytes(&key))
    }

    /// Creates a new random key file at `path` (mode 0600); an existing file is never overwritten.
    pub fn create(path: &Path) -> Result<SecretKey, SecretError> {
        let create_err = |source| SecretError::Create { path: path.to_path_buf(), source };
        let mut key = [0u8; KEY_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(create_err)?;
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = dir.join(format!(".{file_name}.{}.{:016x}.tmp", std::process::id(), rand::random::<u64>()));
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
            // The umask cannot widen 0600, but a restrictive one could narrow it; set it exactly.
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            file.write_all(&key)?;
            file.sync_all()?;
            // link(2) fails when the target exists: the first of two racing creators wins, the other loads it.
            fs::hard_link(&temp, path)
        })();
        let _ = fs::remove_file(&temp);
        match result {
            Ok(()) => {
                if let Ok(dir) = fs::File::open(&dir) {
                    let _ = dir.sync_all();
                }
                tracing::info!(key.path = %path.display(), "created secret key file");
                Ok(SecretKey::from_bytes(&key))
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                Err(SecretError::AlreadyExists { path: path.to_path_buf() })
            }
            Err(e) => Err(create_err(e)),
        }
    }

    /// A key from raw bytes (tests, or a key kept elsewhere than a file).
    pub fn from_bytes(key: &[u8; KEY_BYTES]) -> SecretKey {
        let digest = Sha256::digest(key);
        SecretKey {
            id: hex::encode(&digest[..4]),
            cipher: XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(key)),
        }
    }

    /// The key id that sealed values carry: 8 hex digits of the key's SHA-256 (reveals nothing of the key).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext` as `v1:<key id>:<base64>`, with a fresh random nonce each time.
    pub fn encrypt(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(&self.id);
        let sealed = self.cipher.encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext.as_bytes(), aad: &aad });
        // The AEAD refuses only messages over 256 GiB, which no `&str` in this process reaches.
        let sealed = match sealed {
            Ok(sealed) => sealed,
            Err(_) => unreachable!("XChaCha20-Poly1305 refused a {}-byte message", plaintext.len()),
        };
        let mut bytes = Vec::with_capacity(NONCE_BYTES + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        format!("{VERSION}:{}:{}", self.id, B64.encode(bytes))
    }

    /// Opens a value sealed by [`SecretKey::encrypt`] with this key. A value sealed by another key is
    /// [`SecretError::UnknownKey`]; an altered one is [`SecretError::Tampered`].
    pub fn decrypt(&self, sealed: &str) -> Result<String, SecretError> {
        let parsed = Sealed::parse(sealed)?;
        if parsed.key_id != self.id {
            return Err(SecretError::UnknownKey { key_id: parsed.key_id.to_string() });
        }
        self.open(&parsed)
    }

    fn open(&self, sealed: &Sealed<'_>) -> Result<String, SecretError> {
        let bytes = B64.decode(sealed.body).map_err(|_| SecretError::Malformed { reason: "the body is not base64" })?;
        if bytes.len() < NONCE_BYTES + TAG_BYTES {
            return Err(SecretError::Malformed { reason: "the body is too short" });
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let aad = associated_data(&self.id);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| SecretError::Tampered { key_id: self.id.clone() })?;
        // Authenticated bytes came from `encrypt(&str)`, so they are UTF-8 unless the key itself was misused.
        String::from_utf8(plain).map_err(|_| SecretError::Malformed { reason: "the plaintext is not UTF-8" })
    }
}

/// The current key and older keys still needed to read values sealed before a rotation.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: SecretKey,
    old: Vec<SecretKey>,
}

impl Keyring {
    /// A keyring that seals with `current` and opens values sealed with `current` or any of `old`.
    pub fn new(current: SecretKey, old: Vec<SecretKey>) -> Keyring {
        Keyring { current, old }
    }

    /// Loads (or creates) the current key at `current` and loads every old key file (which must exist).
    pub fn load_many(current: &Path, old: &[PathBuf]) -> Result<Keyring, SecretError> {
        let current = SecretKey::load_or_create(current)?;
        let old = old.iter().map(|path| SecretKey::load(path)).collect::<Result<Vec<_>, _>>()?;
        Ok(Keyring { current, old })
    }

    /// The key new values are sealed with.
    pub fn current(&self) -> &SecretKey {
        &self.current
    }

    /// Seals with the current key.
    pub fn encrypt(&self, plaintext: &str) -> String {
        self.current.encrypt(plaintext)
    }

    /// Opens a value sealed with any key of the ring.
    pub fn decrypt(&self, sealed: &str) -> Result<String, SecretError> {
        let parsed = Sealed::parse(sealed)?;
        let key = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|key| key.id == parsed.key_id)
            .ok_or_else(|| SecretError::UnknownKey { key_id: parsed.key_id.to_string() })?;
        key.open(&parsed)
    }

    /// Whether `sealed` names a key other than the current one (and so should be re-sealed by [`Keyring::rotate`]).
    pub fn needs_rotation(&self, sealed: &str) -> bool {
        Sealed::parse(sealed).map(|p| p.key_id != self.current.id).unwrap_or(false)
    }

    /// Re-seals a value with the current key (opening it with whichever key sealed it).
    pub fn rotate(&self, sealed: &str) -> Result<String, SecretError> {
        Ok(self.current.encrypt(&self.decrypt(sealed)?))
    }
}

/// A sealed value split into its parts (not yet authenticated).
struct Sealed<'a> {
    key_id: &'a str,
    body: &'a str,
}

impl<'a> Sealed<'a> {
    fn parse(text: &'a str) -> Result<Sealed<'a>, SecretError> {
        let mut parts = text.splitn(3, ':');
        let (Some(version), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SecretError::Malformed { reason: "expected three ':'-separated parts" });
        };
        if version != VERSION {
            if version.starts_with('v') && version.len() <= 8 {
                return Err(SecretError::UnsupportedVersion { version: version.to_string() });
            }
            return Err(SecretError::Malformed { reason: "it does not start with a version such as `v1`" });
        }
        if key_id.len() != 8 || !key_id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(SecretError::Malformed { reason: "the key id is not 8 lowercase hex digits" });
        }
        Ok(Sealed { key_id, body })
    }
}

fn associated_data(key_id: &str) -> Vec<u8> {
    format!("drydock-secret:{VERSION}:{key_id}").into_bytes()
}

/// `O_NOFOLLOW`: a key file path that is a symbolic link is refused rather than followed.
fn libc_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// How a secret value is shown: `xxxx` and its last 4 characters — only for values of at least 12 characters,
/// so that at most a third of a value is ever shown (a 4-character secret would otherwise be shown whole);
/// shorter ones are just `xxxx`. The dashboard's hint (`web::SecretHint`) follows the same rule.
pub fn masked(value: &str) -> String {
    const SHOW_TAIL_FROM: usize = 12;
    let count = value.chars().count();
    if count < SHOW_TAIL_FROM {
        return "xxxx".to_string();
    }
    let tail: String = value.chars().skip(count - 4).collect();
    format!("xxxx{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_0600_and_loaded_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret.key");
        let key = SecretKey::load_or_create(&path).unwrap();
        let metadata = fs::metadata(&path).unwrap();
        assert_eq!(metadata.mode() & 0o777, 0o600);
        assert_eq!(metadata.len(), KEY_BYTES as u64);
        let again = SecretKey::load_or_create(&path).unwrap();
        assert_eq!(key.id(), again.id());
        let sealed = key.encrypt("hunter2");
        assert_eq!(again.decrypt(&sealed).unwrap(), "hunter2");
        // No temporary files are left beside the key.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        assert!(matches!(SecretKey::create(&path), Err(SecretError::AlreadyExists { .. })));
    }

    #[test]
    fn racing_creators_end_with_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || SecretKey::load_or_create(&path).unwrap().id().to_string())
            })
            .collect();
        let ids: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    }

    #[test]
    fn wide_permissions_bad_length_and_symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        SecretKey::load_or_create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = SecretKey::load_or_create(&path).unwrap_err();
        assert!(matches!(err, SecretError::WidePermissions { mode: 0o644, .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");

        let short = dir.path().join("short.key");
        fs::write(&short, b"abc").unwrap();
        fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(SecretKey::load(&short), Err(SecretError::BadKeyLength { len: 3, .. })));

        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&short, &link).unwrap();
        assert!(matches!(SecretKey::load(&link), Err(SecretError::Read { .. })));
        assert!(matches!(SecretKey::load(dir.path()), Err(SecretError::NotAFile { .. })));
    }

    #[test]
    fn round_trip_and_fresh_nonces() {
        let key = SecretKey::from_bytes(&[7; KEY_BYTES]);
        for value in ["", "a", "s3cr3t value with spaces", "ünïcødé ✓", &"x".repeat(100_000)] {
            let sealed = key.encrypt(value);
            assert!(sealed.starts_with(&format!("v1:{}:", key.id())), "{sealed}");
            if value.len() >= 8 {
                assert!(!sealed.contains(value), "{sealed}");
            }
            assert_eq!(key.decrypt(&sealed).unwrap(), value);
        }
        assert_ne!(key.encrypt("same"), key.encrypt("same"));
    }

    #[test]
    fn tampered_foreign_and_malformed_values_are_errors() {
        let key = SecretKey::from_bytes(&[1; KEY_BYTES]);
        let other = SecretKey::from_bytes(&[2; KEY_BYTES]);
        let sealed = key.encrypt("top secret");

        assert!(matches!(other.decrypt(&sealed), Err(SecretError::UnknownKey { .. })));
        // The other key's id pasted on: authentication still fails (the id is associated data).
        let relabelled = sealed.replacen(key.id(), other.id(), 1);
        assert!(matches!(other.decrypt(&relabelled), Err(SecretError::Tampered { .. })));

        // Every single-character change of the body is detected.
        let prefix = format!("v1:{}:", key.id());
        let body = &sealed[prefix.len()..];
        for i in 0..body.len() {
            let mut chars: Vec<char> = body.chars().collect();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let altered = format!("{prefix}{}", chars.iter().collect::<String>());
            if altered == sealed {
                continue;
            }
            let err = key.decrypt(&altered).unwrap_err();
            assert!(matches!(err, SecretError::Tampered { .. } | SecretError::Malformed { .. }), "{i}: {err}");
        }
        // Truncation too.
        assert!(key.decrypt(&sealed[..sealed.len() - 2]).is_err());

        for bad in ["", "plain", "v1:", "v1:abc:zzzz", "v2:00000000:AAAA", "x:00000000:AAAA"] {
            assert!(key.decrypt(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(key.decrypt("v2:00000000:AAAA"), Err(SecretError::UnsupportedVersion { .. })));
        assert!(matches!(key.decrypt(&format!("v1:{}:!!!", key.id())), Err(SecretError::Malformed { .. })));
        assert!(matches!(key.decrypt(&format!("v1:{}:AAAA", key.id())), Err(SecretError::Malformed { .. })));
    }

    #[test]
    fn keyring_rotation_keeps_old_values_readable() {
        let dir = tempfile::tempdir().unwrap();
        let old_path = dir.path().join("secret.key.old");
        let new_path = dir.path().join("secret.key");
        let old = SecretKey::load_or_create(&old_path).unwrap();
        let stored = old.encrypt("db password");

        let ring = Keyring::load_many(&new_path, std::slice::from_ref(&old_path)).unwrap();
        assert_ne!(ring.current().id(), old.id());
        assert!(ring.needs_rotation(&stored));
        assert_eq!(ring.decrypt(&stored).unwrap(), "db password");
        let rotated = ring.rotate(&stored).unwrap();
        assert!(!ring.needs_rotation(&rotated));
        assert!(rotated.contains(ring.current().id()));

        // After the old key is dropped, rotated values still open and unrotated ones say which key is missing.
        let ring = Keyring::load_many(&new_path, &[]).unwrap();
        assert_eq!(ring.decrypt(&rotated).unwrap(), "db password");
        let err = ring.decrypt(&stored).unwrap_err();
        assert!(matches!(&err, SecretError::UnknownKey { key_id } if key_id == old.id()), "{err}");
        assert!(Keyring::load_many(&new_path, &[dir.path().join("missing")]).is_err());
    }

    #[test]
    fn masking_shows_only_the_last_four_characters() {
        assert_eq!(masked(""), "xxxx");
        assert_eq!(masked("abc"), "xxxx");
        assert_eq!(masked("abcd"), "xxxx");
        assert_eq!(masked("eleven-char"), "xxxx");
        assert_eq!(masked("twelve-chars"), "xxxxhars");
        assert_eq!(masked("super-secret-token-9f3a"), "xxxx9f3a");
        assert_eq!(masked("ключ-секрет-да"), "xxxxт-да");
    }

    #[test]
    fn debug_output_hides_the_key() {
        let key = SecretKey::from_bytes(&[0xAB; KEY_BYTES]);
        let debug = format!("{key:?}");
        assert!(debug.contains(key.id()) && !debug.to_lowercase().contains("abab"), "{debug}");
    }
}

/// Robustness: any stored text given to `decrypt` is an error or the right value, never a panic or garbage.
#[cfg(test)]
mod robustness_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_text_never_decrypts(text in ".{0,200}") {
            let key = SecretKey::from_bytes(&[9; KEY_BYTES]);
            prop_assert!(key.decrypt(&text).is_err());
            let prefixed = format!("v1:{}:{text}", key.id());
            prop_assert!(key.decrypt(&prefixed).is_err());
        }

        #[test]
        fn round_trip_any_text(text in ".{0,200}") {
            let key = SecretKey::from_bytes(&[9; KEY_BYTES]);
            prop_assert_eq!(key.decrypt(&key.encrypt(&text)).unwrap(), text.clone());
            let masked_value = masked(&text);
            prop_assert!(masked_value.starts_with("xxxx") && masked_value.chars().count() <= 8);
        }
    }
}
