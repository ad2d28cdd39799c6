//! An origin the configuration names and enables: the only kind of origin a mail can be
//! rendered for. It is made by checking a name against the settings, once, where a request
//! names it (or a stored code or account remembers it); the Mailer and the OtpIssuer take it
//! as proof and never see an unchecked name.

use authd_settings::Settings;

/// The name of a configured, enabled origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin(String);

impl Origin {
    /// The origin of that name, if the settings configure and enable it.
    pub fn configured(settings: &Settings, name: &str) -> Option<Self> {
        settings.origin(name).map(|_| Self(name.to_owned()))
    }

    /// `mail.default_origin`, which loading the settings checked is configured and enabled.
    pub fn default_of(settings: &Settings) -> Self {
        Self(settings.mail.default_origin.clone())
    }

    /// This origin if it is still configured (a stored name may predate a change of the
    /// settings), else the default origin.
    pub fn configured_or_default(settings: &Settings, name: &str) -> Self {
        Self::configured(settings, name).unwrap_or_else(|| Self::default_of(settings))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
