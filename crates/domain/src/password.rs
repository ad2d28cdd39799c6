//! The password policy of the contract and argon2id hashing.
//!
//! Hashing is deliberately slow and CPU-bound: callers must run it on a blocking pool,
//! never on an async worker.

use std::fmt;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{
    PasswordHash as PhcHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};

pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 256;

/// The first rule a candidate password breaks. The messages are part of the HTTP contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordPolicyError {
    #[error("Password must be at least 8 characters long")]
    TooShort,
    #[error("Password must be at most 256 characters long")]
    TooLong,
    #[error("Password must contain at least one lowercase character")]
    NoLowercase,
    #[error("Password must contain at least one uppercase character")]
    NoUppercase,
    #[error("Password must contain at least one digit")]
    NoDigit,
    #[error("Password is too common")]
    TooCommon,
}

/// zxcvbn's estimate below which a password counts as well known: fewer than a million
/// guesses (zxcvbn score 0 or 1). That is where the breached-password lists it ships (and
/// their capitalised, l33t, reversed and digit-suffixed variants), common words, names,
/// keyboard walks, sequences and repeats land; `Password1`, `Passw0rd`, `Qwerty123` all do.
const COMMON_BELOW_GUESSES_LOG10: f64 = 6.0;

/// Longer passwords are not looked up: the lists hold next to none of them (the longest
/// common ones, like `Qwertyuiop123456789`, are shorter), and zxcvbn's cost grows fast with
/// length and l33t characters: a crafted 20-character password takes about 30 ms (release),
/// a 64-character one over a second.
const COMMON_CHECK_MAX_CHARS: usize = 20;

/// True when the password is one of the well-known ones an attacker tries first.
fn is_common(raw: &str) -> bool {
    raw.chars().count() <= COMMON_CHECK_MAX_CHARS
        && zxcvbn::zxcvbn(raw, &[]).guesses_log10() < COMMON_BELOW_GUESSES_LOG10
}

/// A password that satisfies the policy. Its value is never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Applies the policy; the first failing rule wins, in the order of the contract.
    /// Length counts characters (Unicode scalar values), not bytes.
    pub fn parse(raw: &str) -> Result<Self, PasswordPolicyError> {
        let len = raw.chars().count();
        if len < MIN_PASSWORD_LEN {
            return Err(PasswordPolicyError::TooShort);
        }
        if len > MAX_PASSWORD_LEN {
            return Err(PasswordPolicyError::TooLong);
        }
        if !raw.chars().any(char::is_lowercase) {
            return Err(PasswordPolicyError::NoLowercase);
        }
        if !raw.chars().any(char::is_uppercase) {
            return Err(PasswordPolicyError::NoUppercase);
        }
        if !raw.chars().any(|c| c.is_ascii_digit()) {
            return Err(PasswordPolicyError::NoDigit);
        }
        if is_common(raw) {
            return Err(PasswordPolicyError::TooCommon);
        }
        Ok(Self(raw.to_owned()))
    }

    /// A password that has just verified against a stored hash, for rehashing it with
    /// stronger parameters: it may predate the policy, so the policy is not applied.
    pub fn verified(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// argon2id cost parameters. The defaults are OWASP's first recommendation
/// (19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordHashError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("stored password hash is malformed: {0}")]
    Malformed(String),
    #[error("hashing failed: {0}")]
    Hashing(String),
}

impl Argon2Params {
    fn hasher(&self) -> Result<Argon2<'static>, PasswordHashError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| PasswordHashError::Params(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Refuses parameters weaker than OWASP's minimum, so a typo in the configuration
    /// cannot silently weaken every stored hash.
    pub fn validate(&self) -> Result<(), PasswordHashError> {
        let floor = Self::default();
        if self.memory_kib < floor.memory_kib || self.iterations < 1 || self.parallelism < 1 {
            return Err(PasswordHashError::Params(format!(
                "argon2 memory_kib must be at least {} and iterations, parallelism at least 1",
                floor.memory_kib
            )));
        }
        self.hasher().map(|_| ())
    }
}

/// A PHC-format argon2id hash string as stored in the database.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

impl PasswordHash {
    /// Hashes a password with a fresh random salt. CPU-heavy: call from a blocking pool.
    pub fn create(password: &Password, params: &Argon2Params) -> Result<Self, PasswordHashError> {
        let salt = SaltString::generate(&mut OsRng);
        let hash = params
            .hasher()?
            .hash_password(password.expose().as_bytes(), &salt)
            .map_err(|e| PasswordHashError::Hashing(e.to_string()))?;
        Ok(Self(hash.to_string()))
    }

    /// Wraps a stored hash string after checking that it parses.
    pub fn from_stored(s: String) -> Result<Self, PasswordHashError> {
        PhcHash::new(&s).map_err(|e| PasswordHashError::Malformed(e.to_string()))?;
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks a candidate (not policy-checked: old passwords may predate the policy).
    /// The comparison inside argon2 is constant-time. CPU-heavy: call from a blocking pool.
    pub fn verify(&self, candidate: &str) -> Result<bool, PasswordHashError> {
        let parsed =
            PhcHash::new(&self.0).map_err(|e| PasswordHashError::Malformed(e.to_string()))?;
        // The parameters come from the stored hash itself, so hashes made with older
        // settings keep verifying.
        match Argon2::default().verify_password(candidate.as_bytes(), &parsed) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::Password) => Ok(false),
            Err(e) => Err(PasswordHashError::Hashing(e.to_string())),
        }
    }

    /// Like [`PasswordHash::verify`], with the caller's working memory: argon2 needs
    /// `memory_kib` of it per run, and allocating that afresh each time makes the kernel zero
    /// new pages on every login (a fifth of the CPU under load). `memory` grows as needed and
    /// can be reused for the next call.
    pub fn verify_with_memory(
        &self,
        candidate: &str,
        memory: &mut Vec<argon2::Block>,
    ) -> Result<bool, PasswordHashError> {
        let malformed = |e: &dyn std::fmt::Display| PasswordHashError::Malformed(e.to_string());
        let parsed = PhcHash::new(&self.0).map_err(|e| malformed(&e))?;
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| malformed(&e))?;
        let version = parsed
            .version
            .map(Version::try_from)
            .transpose()
            .map_err(|e| malformed(&e))?
            .unwrap_or_default();
        let params = Params::try_from(&parsed).map_err(|e| malformed(&e))?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(PasswordHashError::Malformed("no salt or hash".into()));
        };
        let mut salt_buf = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_buf).map_err(|e| malformed(&e))?;
        if memory.len() < params.block_count() {
            memory.resize(params.block_count(), argon2::Block::default());
        }
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params.clone())
            .hash_password_into_with_memory(
                candidate.as_bytes(),
                salt,
                &mut out,
                &mut memory[..params.block_count()],
            )
            .map_err(|e| PasswordHashError::Hashing(e.to_string()))?;
        // `Output`'s equality is constant-time.
        let computed = argon2::password_hash::Output::new(&out).map_err(|e| malformed(&e))?;
        Ok(computed == expected)
    }

    /// True when the stored hash is weaker than (or not made with) the configured parameters,
    /// so it should be replaced after the next successful verification.
    pub fn needs_rehash(&self, params: &Argon2Params) -> bool {
        let Ok(parsed) = PhcHash::new(&self.0) else {
            return true;
        };
        if parsed.algorithm.as_str() != "argon2id" {
            return true;
        }
        let Ok(stored) = Params::try_from(&parsed) else {
            return true;
        };
        stored.m_cost() < params.memory_kib
            || stored.t_cost() < params.iterations
            || stored.p_cost() < params.parallelism
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_reports_the_first_failing_rule_in_contract_order() {
        use PasswordPolicyError::*;
        let cases = [
            ("", TooShort),
            ("Ab1", TooShort),
            ("ABCDEFGH1", NoLowercase),
            ("abcdefgh1", NoUppercase),
            ("Abcdefghi", NoDigit),
        ];
        for (pw, want) in cases {
            assert_eq!(Password::parse(pw).unwrap_err(), want, "{pw:?}");
        }
        let long = format!("Aa1{}", "x".repeat(254));
        assert_eq!(Password::parse(&long).unwrap_err(), TooLong);
        assert!(Password::parse(&format!("Aa1{}", "x".repeat(253))).is_ok());
    }

    #[test]
    fn well_known_passwords_that_pass_the_character_rules_are_too_common() {
        for pw in [
            "Password1",
            "Passw0rd",
            "Qwerty123",
            "Welcome1",
            "Letmein1",
            "Iloveyou1",
            "Abc12345",
            "Password123",
            "P@ssw0rd1",
            "Qwertyuiop123456789",
        ] {
            assert_eq!(
                Password::parse(pw).unwrap_err(),
                PasswordPolicyError::TooCommon,
                "{pw:?}"
            );
        }
        assert_eq!(
            PasswordPolicyError::TooCommon.to_string(),
            "Password is too common"
        );
    }

    #[test]
    fn the_character_rules_come_before_the_common_check() {
        // "password" is the most common of all, but it is first of all too short, then has no
        // uppercase letter, then no digit.
        use PasswordPolicyError::*;
        assert_eq!(Password::parse("passwor").unwrap_err(), TooShort);
        assert_eq!(Password::parse("password1").unwrap_err(), NoUppercase);
        assert_eq!(Password::parse("Password").unwrap_err(), NoDigit);
    }

    #[test]
    fn the_common_check_stays_cheap_for_long_crafted_passwords() {
        // l33t characters make zxcvbn enumerate substitutions; above the cap it is not run.
        let crafted = format!("Aa1{}", "4@8({[<3=6&#!|1i7+0$5%2x".repeat(3));
        let started = std::time::Instant::now();
        assert!(Password::parse(&crafted).is_ok());
        assert!(
            started.elapsed() < std::time::Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn uncommon_passwords_pass() {
        for pw in [
            "Correct1horse",
            "Brand2newpass",
            "Third3pass",
            "Other1horse",
            "Xk9mQ2pLw",
            format!("Aa1{}", "x".repeat(253)).as_str(),
        ] {
            assert!(Password::parse(pw).is_ok(), "{pw:?}");
        }
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        // 8 characters, 11 bytes.
        assert!(Password::parse("Ääbcde1x").is_ok());
        assert_eq!(
            Password::parse("Ääbc1é").unwrap_err(),
            PasswordPolicyError::TooShort
        );
    }

    #[test]
    fn messages_are_the_contract_sentences() {
        assert_eq!(
            PasswordPolicyError::NoUppercase.to_string(),
            "Password must contain at least one uppercase character"
        );
    }

    #[test]
    fn hash_verifies_the_right_password_only_and_knows_its_strength() {
        let params = Argon2Params {
            memory_kib: 19_456,
            iterations: 1,
            parallelism: 1,
        };
        let pw = Password::parse("Correct1horse").unwrap();
        let hash = PasswordHash::create(&pw, &params).unwrap();
        assert!(hash.as_str().starts_with("$argon2id$"));
        assert!(hash.verify("Correct1horse").unwrap());
        assert!(!hash.verify("Correct1hors").unwrap());
        let mut memory = Vec::new();
        assert!(hash
            .verify_with_memory("Correct1horse", &mut memory)
            .unwrap());
        assert!(!hash
            .verify_with_memory("Correct1hors", &mut memory)
            .unwrap());
        assert_eq!(
            memory.len(),
            19_456,
            "one block per KiB, kept for the next call"
        );
        assert!(!hash.needs_rehash(&params));
        assert!(hash.needs_rehash(&Argon2Params {
            iterations: 2,
            ..params
        }));
    }

    #[test]
    fn weak_parameters_are_refused() {
        assert!(Argon2Params {
            memory_kib: 1024,
            iterations: 2,
            parallelism: 1
        }
        .validate()
        .is_err());
        assert!(Argon2Params::default().validate().is_ok());
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let pw = Password::parse("Correct1horse").unwrap();
        assert!(!format!("{pw:?}").contains("horse"));
    }
}
