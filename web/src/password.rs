//! Password hashing for local users: argon2id PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$…`).
//!
//! The coordinator's `user add` calls [`hash_password`] and stores the string; sign-in calls
//! [`verify_password`]. Parameters are the `argon2` crate's defaults (OWASP's argon2id minimum: 19 MiB, t=2, p=1);
//! a stored hash carries its own parameters, so raising them later keeps old hashes valid.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Why a password could not be hashed or a stored hash not read.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is empty: choose one of at least {min} characters", min = MIN_PASSWORD_CHARS)]
    Empty,
    #[error("the password has {got} characters: choose one of at least {min}", min = MIN_PASSWORD_CHARS)]
    TooShort { got: usize },
    #[error("hashing the password failed: {0}")]
    Hash(String),
    #[error("the stored password hash is not a PHC string ({0}): set the password again with `coordinator user add`")]
    BadStoredHash(String),
}

/// The shortest password [`hash_password`] accepts.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Hashes `password` with argon2id and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let got = password.chars().count();
    if got == 0 {
        return Err(PasswordError::Empty);
    }
    if got < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort { got });
    }
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `stored` (constant time in the password, by the argon2 crate).
pub fn verify_password(password: &str, stored: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(stored).map_err(|e| PasswordError::BadStoredHash(e.to_string()))?;
    Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Spends the time of one verification, so that a sign-in for an unknown user takes as long as one with a wrong
/// password (no user enumeration by timing).
pub fn burn_verification(password: &str) {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if let Some(hash) = DUMMY.get_or_init(|| hash_password("drydock-dummy-password").ok()) {
        let _ = verify_password(password, hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash).unwrap());
        assert!(!verify_password("correct horse batterz", &hash).unwrap());
        assert_ne!(hash, hash_password("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn short_passwords_and_bad_hashes_are_refused() {
        assert!(matches!(hash_password(""), Err(PasswordError::Empty)));
        assert!(matches!(hash_password("abc"), Err(PasswordError::TooShort { got: 3 })));
        assert!(matches!(verify_password("x", "plain"), Err(PasswordError::BadStoredHash(_))));
    }
}
