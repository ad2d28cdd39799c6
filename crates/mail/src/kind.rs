/// The kinds of mail authd sends. The name is the template folder and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailKind {
    PasswordReset,
    PasswordChanged,
}

impl MailKind {
    pub const ALL: &'static [MailKind] = &[MailKind::PasswordReset, MailKind::PasswordChanged];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::PasswordChanged => "password_changed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}
