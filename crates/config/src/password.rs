//! What kind of secret a user's `password` holds: plain text, a SCRAM verifier or an md5 hash.
//!
//! The forms are the ones PostgreSQL stores in `pg_authid.rolpassword`, so an operator can
//! copy them from the database instead of keeping plain passwords in the file.

use crate::User;

/// The form of a configured password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordKind {
    /// Plain text: usable for every client auth method and towards the servers.
    Plain,
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`: checks SCRAM clients only.
    ScramVerifier,
    /// `md5` followed by 32 hex digits (md5 of password and user name): checks md5 clients only.
    Md5Hash,
}

/// The prefix of a SCRAM-SHA-256 verifier.
const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";

impl PasswordKind {
    /// Classifies `secret`. Anything that is not exactly a verifier or an md5 hash is plain
    /// text (so `md5secret` is a plain password).
    pub fn of(secret: &str) -> PasswordKind {
        if secret.starts_with(SCRAM_PREFIX) {
            PasswordKind::ScramVerifier
        } else if secret.len() == 35
            && secret.starts_with("md5")
            && secret[3..].bytes().all(|b| b.is_ascii_hexdigit())
        {
            PasswordKind::Md5Hash
        } else {
            PasswordKind::Plain
        }
    }
}

impl User {
    /// The form of [`User::password`].
    pub fn password_kind(&self) -> PasswordKind {
        PasswordKind::of(&self.password)
    }
}

/// Checks the shape of a SCRAM-SHA-256 verifier (not its base64 content).
pub(crate) fn check_scram_verifier(secret: &str) -> Result<(), String> {
    let shape = "malformed SCRAM-SHA-256 verifier: expected \
                 SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>";
    let rest = secret
        .strip_prefix(SCRAM_PREFIX)
        .ok_or_else(|| shape.to_owned())?;
    let (params, keys) = rest.split_once('$').ok_or_else(|| shape.to_owned())?;
    let (iterations, salt) = params.split_once(':').ok_or_else(|| shape.to_owned())?;
    let (stored_key, server_key) = keys.split_once(':').ok_or_else(|| shape.to_owned())?;
    let iterations_ok = iterations.parse::<u32>().is_ok_and(|n| n > 0);
    let parts_ok = [salt, stored_key, server_key].iter().all(|p| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    });
    if iterations_ok && parts_ok {
        Ok(())
    } else {
        Err(shape.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(PasswordKind::of("app"), PasswordKind::Plain);
        assert_eq!(PasswordKind::of("md5secret"), PasswordKind::Plain);
        assert_eq!(
            PasswordKind::of(&format!("md5{}", "a".repeat(32))),
            PasswordKind::Md5Hash
        );
        assert_eq!(
            PasswordKind::of("SCRAM-SHA-256$4096:c2FsdA==$a:b"),
            PasswordKind::ScramVerifier
        );
    }

    #[test]
    fn verifier_shape() {
        assert!(check_scram_verifier("SCRAM-SHA-256$4096:c2FsdA==$YWJj+/=:ZGVm").is_ok());
        for bad in [
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$x:s$a:b",
            "SCRAM-SHA-256$4096:s$a",
            "SCRAM-SHA-256$0:s$a:b",
        ] {
            assert!(check_scram_verifier(bad).is_err(), "{bad}");
        }
    }
}
