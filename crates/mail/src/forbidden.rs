//! FORBIDDEN_MAIL_PROVIDER: the maintained list of disposable-mail domains (the
//! `disposable-emails` crate) plus domains from the configuration, subdomains included.

use std::collections::HashSet;

#[derive(Debug, Clone, Default)]
pub struct ForbiddenDomains {
    extra: HashSet<String>,
    allowed: HashSet<String>,
}

fn normalise<I: IntoIterator<Item = S>, S: AsRef<str>>(domains: I) -> HashSet<String> {
    domains
        .into_iter()
        .map(|d| {
            d.as_ref()
                .trim()
                .trim_start_matches('.')
                .to_ascii_lowercase()
        })
        .filter(|d| !d.is_empty())
        .collect()
}

impl ForbiddenDomains {
    /// `extra` adds domains to the list; `allowed` takes domains (and their subdomains) off it.
    pub fn new<I, S, J, T>(extra: I, allowed: J) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
        J: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        Self {
            extra: normalise(extra),
            allowed: normalise(allowed),
        }
    }

    /// True when the domain or any parent domain (`a.b.example` → `b.example` → `example`) is
    /// listed. The domain is expected in lower case, as `Email` keeps it.
    pub fn is_forbidden(&self, domain: &str) -> bool {
        let mut rest = domain.trim_end_matches('.');
        loop {
            if self.allowed.contains(rest) {
                return false;
            }
            if self.extra.contains(rest) || disposable_emails::is_disposable_domain(rest) {
                return true;
            }
            match rest.split_once('.') {
                Some((_, parent)) if parent.contains('.') => rest = parent,
                _ => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_disposable_domains_and_their_subdomains_are_forbidden() {
        let f = ForbiddenDomains::new(["corp-throwaway.example"], ["test.com"]);
        assert!(f.is_forbidden("mailinator.com"));
        assert!(f.is_forbidden("eu.mailinator.com"));
        assert!(f.is_forbidden("corp-throwaway.example"));
        assert!(f.is_forbidden("x.y.corp-throwaway.example"));
        assert!(!f.is_forbidden("gmail.com"));
        assert!(!f.is_forbidden("example.org"));
        assert!(
            f.is_forbidden("example.com"),
            "the maintained list names it"
        );
        assert!(
            !f.is_forbidden("test.com"),
            "allowed by configuration despite the list"
        );
        assert!(!f.is_forbidden("eu.test.com"));
        assert!(!f.is_forbidden("throwaway.example"));
    }
}
