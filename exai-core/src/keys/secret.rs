//! Key secrets: `exai-sk-` and 32 random bytes from the operating system (base64url, 43
//! characters). Only the SHA-256 of a secret is ever stored or compared.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every key secret starts with, so that a leaked one is recognisable (and scrubbable).
pub(crate) const PREFIX: &str = "exai-sk-";

/// A new secret.
pub(crate) fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The SHA-256 of `secret`, lowercase hex: what stores keep and lookups use.
pub(crate) fn hash(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest.iter() {
        use std::fmt::Write;
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Whether two hashes (or tokens) are equal, in time that does not depend on where they differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_hash_to_64_hex_digits() -> Result<(), getrandom::Error> {
        let (a, b) = (generate()?, generate()?);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 43, "{a}");
        assert_ne!(a, b);
        let h = hash(&a);
        assert_eq!(h.len(), 64);
        assert!(same(&h, &hash(&a)) && !same(&h, &hash(&b)));
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        Ok(())
    }
}
