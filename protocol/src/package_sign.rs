//! Package signatures in minisign's format, through the `minisign` crate (the
//! reference implementation's author's Rust port): key files and `.minisig` files are
//! the stock tool's, so `minisign -Vm PACKAGE -p KEY.pub` checks what a device checks.

use std::io::Cursor;

use super::PackageError;

/// A new key pair as the text of minisign's two key files.
pub struct KeyPair {
    /// `minisign.pub` contents: an untrusted comment line and the base64 key.
    pub public: String,
    /// The secret key file's contents (not password-protected: keep it 0600).
    pub secret: String,
    /// The key id as minisign prints it (16 hex digits).
    pub key_id: String,
}

/// A public key a device trusts, and its id.
#[derive(Clone)]
pub struct TrustedKey {
    pub key_id: String,
    key: minisign::PublicKey,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustedKey({})", self.key_id)
    }
}

impl TrustedKey {
    /// Reads a public key from a `.pub` file's text, or from its bare base64 line.
    pub fn parse(text: &str) -> Result<Self, PackageError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .unwrap_or("");
        let key = minisign::PublicKey::from_base64(line)
            .map_err(|e| PackageError::Key(format!("not a minisign public key: {e}")))?;
        Ok(TrustedKey {
            key_id: key_id(key.keynum()),
            key,
        })
    }
}

/// minisign prints key ids as the key number read little-endian, in upper-case hex.
fn key_id(keynum: &[u8]) -> String {
    let mut n = [0u8; 8];
    n.copy_from_slice(&keynum[..8]);
    format!("{:016X}", u64::from_le_bytes(n))
}

/// Generates an Ed25519 key pair (randomness from the OS).
pub fn generate_keypair(comment: &str) -> Result<KeyPair, PackageError> {
    let pair = minisign::KeyPair::generate_unencrypted_keypair()
        .map_err(|e| PackageError::Key(e.to_string()))?;
    let key_id = key_id(pair.pk.keynum());
    let public = pair
        .pk
        .to_box()
        .map_err(|e| PackageError::Key(e.to_string()))?
        .into_string();
    let secret = pair
        .sk
        .to_box(Some(comment))
        .map_err(|e| PackageError::Key(e.to_string()))?
        .into_string();
    Ok(KeyPair {
        public,
        secret,
        key_id,
    })
}

/// Signs `data` with a secret key file's text; `password` for a key made
/// password-protected by `minisign -G`. Returns the `.minisig` text.
pub fn sign(
    secret_key: &str,
    password: Option<String>,
    data: &[u8],
    trusted_comment: &str,
) -> Result<String, PackageError> {
    let boxed = minisign::SecretKeyBox::from_string(secret_key)
        .map_err(|e| PackageError::Key(format!("not a minisign secret key: {e}")))?;
    let sk = match password {
        Some(p) => boxed.into_secret_key(Some(p)),
        None => boxed.into_unencrypted_secret_key(),
    }
    .map_err(|e| PackageError::Key(format!("cannot open the secret key: {e}")))?;
    let signature = minisign::sign(
        None,
        &sk,
        Cursor::new(data),
        Some(trusted_comment),
        Some("signature from edge-a2i secret key"),
    )
    .map_err(|e| PackageError::Key(format!("cannot sign: {e}")))?;
    Ok(signature.into_string())
}

/// Checks a `.minisig` text over `data` against the trusted keys and returns the
/// key that signed it. Legacy (non-prehashed) signatures are refused.
pub fn verify<'k>(
    data: &[u8],
    signature: &str,
    trusted: &'k [TrustedKey],
) -> Result<&'k TrustedKey, PackageError> {
    let boxed = minisign::SignatureBox::from_string(signature)
        .map_err(|e| PackageError::SignatureSyntax(e.to_string()))?;
    let signer = key_id(boxed.keynum());
    let Some(key) = trusted.iter().find(|k| k.key_id == signer) else {
        return Err(PackageError::UnknownKey {
            key_id: signer,
            trusted: if trusted.is_empty() {
                "none configured".into()
            } else {
                trusted
                    .iter()
                    .map(|k| k.key_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        });
    };
    minisign::verify(&key.key, &boxed, Cursor::new(data), true, false, false).map_err(|e| {
        PackageError::BadSignature {
            key_id: signer,
            reason: e.to_string(),
        }
    })?;
    Ok(key)
}

/// The trusted comment of a `.minisig` text (signed with the data; see
/// [`super::PackageManifest::trusted_comment`]).
pub fn trusted_comment(signature: &str) -> Result<String, PackageError> {
    minisign::SignatureBox::from_string(signature)
        .and_then(|b| b.trusted_comment())
        .map_err(|e| PackageError::SignatureSyntax(e.to_string()))
}
