//! The operator's token: 32 random bytes (hex) in `DATA/operator.token` (mode 0600), created at
//! the first start and printed at each start as a link. A request that presents it
//! (`Authorization: Bearer TOKEN`) may use the controls from any address; one that presents
//! another token is refused. It is compared in constant time (the SHA-256 of what was presented
//! against the token's, every byte looked at), so timing tells nothing about how much of a guess
//! was right.

use std::path::Path;

use anyhow::{Context, Result, bail};
use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

/// The token's file in the data directory.
pub const FILE: &str = "operator.token";

/// See the module's doc.
pub struct Token {
    text: String,
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token of the given text (the file's, or a test's).
    pub(crate) fn new(text: String) -> Token {
        let digest = Sha256::digest(text.as_bytes()).into();
        Token { text, digest }
    }

    /// Loads the token of `data_dir`, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Token> {
        let path = data_dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let text = text.trim();
                if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bail!(
                        "the operator token {} is damaged (64 hex digits expected); delete it and a new one is made at the next start",
                        path.display()
                    );
                }
                Ok(Token::new(text.to_ascii_lowercase()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes: [u8; 32] = rand::random();
                let text = hex::encode(bytes);
                crate::state::write_private(&path, text.as_bytes())?;
                Ok(Token::new(text))
            }
            Err(e) => {
                Err(e).with_context(|| format!("cannot read the operator token {}", path.display()))
            }
        }
    }

    /// The token, for the link printed at start.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `presented` is the token, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        digest
            .iter()
            .zip(&self.digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The token a request presents: `Authorization: Bearer TOKEN`.
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_reloaded_and_compared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = Token::load_or_create(dir.path()).expect("create");
        let path = dir.path().join(FILE);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("file").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let again = Token::load_or_create(dir.path()).expect("reload");
        assert_eq!(again.text(), token.text());
        assert!(again.matches(token.text()));
        assert!(!again.matches(&token.text()[..63]));
        assert!(!again.matches(""));
        assert_eq!(format!("{token:?}"), "Token(..)", "never in a debug line");
        std::fs::write(&path, "short").expect("write");
        let e = Token::load_or_create(dir.path()).expect_err("damaged");
        assert!(format!("{e:#}").contains(FILE), "{e:#}");
    }

    #[test]
    fn only_a_bearer_authorization_presents_a_token() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().expect("value"));
        assert_eq!(presented(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().expect("value"));
        assert_eq!(presented(&h), None);
    }
}
