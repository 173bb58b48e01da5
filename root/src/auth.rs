//! Passwords and tokens: salted PBKDF2-SHA256 password hashes, and RS256 JWTs with the claims
//! Oakestra's clients and its network plugin expect (`sub`, `user`, `roles`, `organization`,
//! `type`, `fresh`, `iat`, `nbf`, `jti`, `exp`).
//!
//! The signing key is one RSA key committed through Raft (see `state::RootState::signing_key`),
//! so a token minted by any replica verifies on every other.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use pbkdf2::pbkdf2_hmac;
use rand::RngCore;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, EncodeRsaPublicKey, LineEnding};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Size of the generated RSA key, as upstream's jwt_generator.
pub const RSA_BITS: usize = 2048;

/// `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`.
pub fn hash_password(password: &str, iterations: u32) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let mut out = [0u8; 32];
    pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations.max(1), &mut out);
    format!("pbkdf2-sha256${}${}${}", iterations.max(1), hex::encode(salt), hex::encode(out))
}

/// Does `password` match `stored` (made by [`hash_password`])? Compares in constant time.
pub fn verify_password(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(iter), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(hash)) = (iter.parse::<u32>(), hex::decode(salt), hex::decode(hash)) else {
        return false;
    };
    let mut out = vec![0u8; hash.len()];
    pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut out);
    out.iter().zip(&hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 && !hash.is_empty()
}

/// Generate a new RSA private key, PKCS#1 PEM.
pub fn generate_private_pem() -> Result<String, AuthError> {
    let mut rng = rand08::OsRng;
    let key = rsa::RsaPrivateKey::new(&mut rng, RSA_BITS).map_err(|e| AuthError::Key(e.to_string()))?;
    Ok(key.to_pkcs1_pem(LineEnding::LF).map_err(|e| AuthError::Key(e.to_string()))?.to_string())
}

// rsa 0.9 takes a rand_core 0.6 RNG.
mod rand08 {
    pub use rsa::rand_core::OsRng;
}

/// The key pair every replica signs and verifies with.
pub struct SigningKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public key, PKCS#1 PEM (for verifiers outside the root).
    pub public_pem: String,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKeys(..)")
    }
}

impl SigningKeys {
    pub fn from_private_pem(pem: &str) -> Result<Self, AuthError> {
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| AuthError::Key(e.to_string()))?;
        let private_der = key.to_pkcs1_der().map_err(|e| AuthError::Key(e.to_string()))?;
        let public = key.to_public_key();
        let public_der = public.to_pkcs1_der().map_err(|e| AuthError::Key(e.to_string()))?;
        let public_pem = public.to_pkcs1_pem(LineEnding::LF).map_err(|e| AuthError::Key(e.to_string()))?;
        Ok(SigningKeys {
            encoding: EncodingKey::from_rsa_der(private_der.as_bytes()),
            decoding: DecodingKey::from_rsa_der(public_der.as_bytes()),
            public_pem,
        })
    }

    /// Sign `claims` (RS256).
    pub fn mint(&self, claims: &Claims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &self.encoding).map_err(|e| AuthError::Key(e.to_string()))
    }

    /// Verify signature, algorithm (RS256 only), `exp` and `nbf`, and the token type.
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, AuthError> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid(e.to_string()),
        })?;
        let claims = data.claims;
        if claims.file_access_token {
            return Err(AuthError::WrongType("Only access token allowed".into()));
        }
        if claims.token_type != expected {
            return Err(AuthError::WrongType(match expected {
                TokenType::Access => "Only non-refresh tokens are allowed".into(),
                TokenType::Refresh => "Only refresh tokens are allowed".into(),
            }));
        }
        Ok(claims)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

/// flask-jwt-extended's claims plus Oakestra's `user`, `roles`, `organization`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub user: String,
    pub roles: Vec<String>,
    /// The organization id.
    pub organization: String,
    #[serde(rename = "type")]
    pub token_type: TokenType,
    #[serde(default)]
    pub fresh: bool,
    pub iat: u64,
    pub nbf: u64,
    pub jti: String,
    pub exp: u64,
    /// Upstream's file-access tokens are refused where an access token is required.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub file_access_token: bool,
}

impl Claims {
    pub fn new(user: &str, roles: Vec<String>, organization: &str, token_type: TokenType, now_secs: u64, ttl_secs: u64) -> Self {
        let mut jti = [0u8; 16];
        rand::rng().fill_bytes(&mut jti);
        Claims {
            sub: user.to_owned(),
            user: user.to_owned(),
            roles,
            organization: organization.to_owned(),
            token_type,
            fresh: token_type == TokenType::Access,
            iat: now_secs,
            nbf: now_secs,
            jti: hex::encode(jti),
            exp: now_secs + ttl_secs,
            file_access_token: false,
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("signing key: {0}")]
    Key(String),
    #[error("token has expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("{0}")]
    WrongType(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_round_trip() {
        let h = hash_password("secret", 10);
        assert!(verify_password("secret", &h));
        assert!(!verify_password("Secret", &h));
        assert_ne!(h, hash_password("secret", 10), "salted");
        assert!(!verify_password("secret", "plain"));
        assert!(!verify_password("secret", "pbkdf2-sha256$10$zz$00"));
    }

    #[test]
    fn tokens_verify_only_with_the_same_key_and_type() {
        let keys = SigningKeys::from_private_pem(&generate_private_pem().unwrap()).unwrap();
        let other = SigningKeys::from_private_pem(&generate_private_pem().unwrap()).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let access = keys.mint(&Claims::new("Admin", vec!["Admin".into()], "o1", TokenType::Access, now, 600)).unwrap();
        let claims = keys.verify(&access, TokenType::Access).unwrap();
        assert_eq!((claims.user.as_str(), claims.organization.as_str()), ("Admin", "o1"));
        assert!(matches!(other.verify(&access, TokenType::Access), Err(AuthError::Invalid(_))));
        assert!(matches!(keys.verify(&access, TokenType::Refresh), Err(AuthError::WrongType(_))));
        let expired = keys.mint(&Claims::new("Admin", vec![], "o1", TokenType::Access, now - 1000, 600)).unwrap();
        assert_eq!(keys.verify(&expired, TokenType::Access), Err(AuthError::Expired));
    }
}
