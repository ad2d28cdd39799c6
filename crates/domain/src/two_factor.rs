//! Second factors: TOTP (RFC 6238 through the `totp-rs` crate) and recovery codes.

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// TOTP as the contract fixes it: SHA-1, 6 digits, 30-second steps, 160-bit secrets.
pub mod totp {
    use super::*;
    use totp_rs::{Algorithm, TOTP};

    pub const STEP_SECS: i64 = 30;
    pub const DIGITS: usize = 6;
    pub const SECRET_BYTES: usize = 20;

    /// A TOTP secret. Never printed.
    #[derive(Clone, PartialEq, Eq)]
    pub struct Secret(Vec<u8>);

    impl std::fmt::Debug for Secret {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("totp::Secret(<redacted>)")
        }
    }

    impl Secret {
        /// A fresh secret from the OS CSPRNG.
        pub fn generate() -> Self {
            let mut bytes = vec![0u8; SECRET_BYTES];
            rand::rngs::OsRng.fill(bytes.as_mut_slice());
            Self(bytes)
        }

        /// A stored secret; `None` unless it has exactly the contract's length.
        pub fn from_bytes(bytes: Vec<u8>) -> Option<Self> {
            (bytes.len() == SECRET_BYTES).then_some(Self(bytes))
        }

        pub fn as_bytes(&self) -> &[u8] {
            &self.0
        }

        fn totp(&self) -> TOTP {
            TOTP::new_unchecked(
                Algorithm::SHA1,
                DIGITS,
                0,
                u64::try_from(STEP_SECS).unwrap_or(30),
                self.0.clone(),
            )
        }

        /// RFC 4648 base32 without padding, as authenticator apps read it.
        pub fn base32(&self) -> String {
            self.totp().get_secret_base32()
        }

        /// The code for a step (`unix_seconds / 30`).
        pub fn code_at_step(&self, step: i64) -> String {
            let t = u64::try_from(step.max(0) * STEP_SECS).unwrap_or(0);
            self.totp().generate(t)
        }

        /// The step a code is accepted for at `now_secs`: the current step or the one before,
        /// and only a step after `last_accepted` (no replay). The comparison is constant-time.
        pub fn accepts(
            &self,
            code: &str,
            now_secs: i64,
            last_accepted: Option<i64>,
        ) -> Option<i64> {
            let current = step_at(now_secs);
            let mut found = None;
            // Both candidates are always computed and compared, whatever matches.
            for step in [current - 1, current] {
                let matches: bool = self
                    .code_at_step(step)
                    .as_bytes()
                    .ct_eq(code.as_bytes())
                    .into();
                if matches && last_accepted.is_none_or(|last| step > last) {
                    found = Some(step);
                }
            }
            found
        }
    }

    pub fn step_at(unix_secs: i64) -> i64 {
        unix_secs.div_euclid(STEP_SECS)
    }

    /// Everything but RFC 3986's unreserved characters is percent-encoded.
    const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');

    fn encode(s: &str) -> String {
        percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
    }

    /// The key URI authenticator apps scan (Google Authenticator's "Key Uri Format"):
    /// `otpauth://totp/<issuer>:<account>?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`,
    /// label and parameters percent-encoded.
    pub fn otpauth_url(secret: &Secret, issuer: &str, account: &str) -> String {
        format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
            encode(issuer),
            encode(account),
            secret.base32(),
            encode(issuer),
        )
    }
}

/// Recovery codes: 10 single-use codes of 16 characters from an alphabet without look-alikes
/// (no 0/O, 1/I/L). Stored as keyed hashes.
pub mod recovery {
    use super::*;

    pub const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    pub const LEN: usize = 16;
    pub const COUNT: usize = 10;
    /// Longer input is refused as malformed before any lookup.
    pub const MAX_INPUT_LEN: usize = 64;

    /// A fresh set from the OS CSPRNG (about 79 bits each).
    pub fn generate_set() -> Vec<String> {
        let mut rng = rand::rngs::OsRng;
        (0..COUNT)
            .map(|_| {
                (0..LEN)
                    .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                    .collect()
            })
            .collect()
    }

    /// The canonical form of typed input: spaces and dashes dropped, upper case. `None` when
    /// what remains cannot be a code.
    pub fn normalize(input: &str) -> Option<String> {
        let code: String = input
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        (code.len() == LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
    }

    /// The stored form: HMAC-SHA256 keyed with the service key, bound to the user, so the
    /// table alone reveals nothing and a code of one user never matches another's.
    pub fn hash(key: &[u8], user_id: i64, code: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"authd/recovery-code/v1\0");
        mac.update(&user_id.to_be_bytes());
        mac.update(code.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors_at_six_digits() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890"; the last six digits.
        let s = totp::Secret::from_bytes(b"12345678901234567890".to_vec()).unwrap();
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(s.code_at_step(totp::step_at(t)), code, "t = {t}");
        }
    }

    #[test]
    fn the_current_and_previous_step_are_accepted_once() {
        let s = totp::Secret::generate();
        let now = 1_800_000_015;
        let cur = totp::step_at(now);
        assert_eq!(s.accepts(&s.code_at_step(cur), now, None), Some(cur));
        assert_eq!(
            s.accepts(&s.code_at_step(cur - 1), now, None),
            Some(cur - 1)
        );
        assert_eq!(s.accepts(&s.code_at_step(cur - 2), now, None), None);
        assert_eq!(s.accepts(&s.code_at_step(cur + 1), now, None), None);
        assert_eq!(s.accepts(&s.code_at_step(cur), now, Some(cur)), None);
        assert_eq!(
            s.accepts(&s.code_at_step(cur - 1), now, Some(cur - 1)),
            None
        );
        assert_eq!(
            s.accepts(&s.code_at_step(cur), now, Some(cur - 1)),
            Some(cur)
        );
        assert_eq!(s.accepts("12345", now, None), None);
    }

    #[test]
    fn the_key_uri_is_percent_encoded_and_names_the_parameters() {
        let s = totp::Secret::from_bytes(vec![0u8; 20]).unwrap();
        assert_eq!(
            totp::otpauth_url(&s, "Acme Inc", "ann+x@example.org"),
            "otpauth://totp/Acme%20Inc:ann%2Bx%40example.org?secret=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&issuer=Acme%20Inc&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn recovery_codes_are_unambiguous_and_match_loosely_typed_input() {
        let set = recovery::generate_set();
        assert_eq!(set.len(), 10);
        assert_eq!(
            set.iter().collect::<std::collections::HashSet<_>>().len(),
            10
        );
        for c in &set {
            assert_eq!(c.len(), 16);
            assert!(!c.contains(['0', 'O', '1', 'I', 'L']));
            assert_eq!(recovery::normalize(c).as_deref(), Some(c.as_str()));
            let typed = format!(
                " {}-{} {}-{} ",
                &c[..4].to_lowercase(),
                &c[4..8],
                &c[8..12].to_lowercase(),
                &c[12..]
            );
            assert_eq!(recovery::normalize(&typed).as_deref(), Some(c.as_str()));
        }
        assert_eq!(recovery::normalize("ABCD"), None);
        assert_eq!(recovery::normalize("0000000000000000"), None);
        let h = recovery::hash(b"k", 1, &set[0]);
        assert_ne!(h, recovery::hash(b"k", 2, &set[0]));
        assert!(!h.contains(&set[0]));
    }
}
