//! Email addresses as the product sees them: valid syntax, at most 256 characters, and one
//! normalised (lower-case) spelling so that comparisons are case-insensitive everywhere.

use std::fmt;
use std::str::FromStr;

/// Longest address the contract accepts, in characters.
pub const MAX_EMAIL_LEN: usize = 256;

/// A syntactically valid, normalised email address. One that exists is valid.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// The contract's sentence for any malformed address.
    #[error("Invalid email address")]
    Invalid,
}

impl Email {
    /// Parses and normalises an address: surrounding whitespace is refused rather than
    /// trimmed, because a client that sends it has a bug worth seeing.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        if raw.is_empty() || raw.chars().count() > MAX_EMAIL_LEN {
            return Err(EmailError::Invalid);
        }
        // Display names ("Ann <ann@x.org>") are valid RFC 5322 but not an address a user types.
        let opts = email_address::Options::default()
            .without_display_text()
            .without_domain_literal();
        let parsed = email_address::EmailAddress::parse_with_options(raw, opts)
            .map_err(|_| EmailError::Invalid)?;
        let domain = parsed.domain();
        // A bare host ("user@localhost") cannot receive mail from the internet; require a dot
        // and no empty labels.
        if !domain.contains('.') || domain.split('.').any(str::is_empty) {
            return Err(EmailError::Invalid);
        }
        Ok(Self(raw.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }

    /// A form safe for logs: first character of the local part and the domain
    /// (`a***@example.com`). The full address never goes to a log line.
    pub fn masked(&self) -> String {
        match self.0.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => "***".to_owned(),
        }
    }
}

/// For values read back from storage (`#[diesel(deserialize_as = String)]`): they are parsed
/// again, so a row that does not hold an address is an error where it is read.
impl TryFrom<String> for Email {
    type Error = EmailError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl FromStr for Email {
    type Err = EmailError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Debug output is masked so that a stray `{:?}` in a log line cannot leak an address.
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses_and_lowercases_them() {
        let e = Email::parse("Ann.Smith+tag@Example.COM").unwrap();
        assert_eq!(e.as_str(), "ann.smith+tag@example.com");
        assert_eq!(e.domain(), "example.com");
    }

    #[test]
    fn refuses_malformed_addresses() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@@b.com",
            "a b@c.com",
            "a@localhost",
            "Ann <ann@example.com>",
            " a@b.com",
            "a@b..com",
            "a@[127.0.0.1]",
        ] {
            assert_eq!(Email::parse(bad), Err(EmailError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn refuses_addresses_longer_than_256_characters() {
        let local = "a".repeat(60);
        let domain = format!("{}.com", vec!["b".repeat(60); 4].join("."));
        let long = format!("{local}@{domain}");
        assert!(long.len() > MAX_EMAIL_LEN);
        assert_eq!(Email::parse(&long), Err(EmailError::Invalid));
    }

    #[test]
    fn debug_and_masked_hide_the_local_part() {
        let e = Email::parse("secret.person@example.org").unwrap();
        assert_eq!(e.masked(), "s***@example.org");
        assert!(!format!("{e:?}").contains("secret"));
    }
}
