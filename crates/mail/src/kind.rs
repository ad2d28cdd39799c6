/// The kinds of mail authd sends. The name is the template folder and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailKind {
    PasswordReset,
    PasswordChanged,
    EmailOtpSetup,
    EmailOtpChallenge,
    TwoFactorChanged,
    RecoveryCodesReset,
    RecoveryCodeUsed,
    EmailTransferVerify,
    EmailChanged,
}

impl MailKind {
    pub const ALL: &'static [MailKind] = &[
        MailKind::PasswordReset,
        MailKind::PasswordChanged,
        MailKind::EmailOtpSetup,
        MailKind::EmailOtpChallenge,
        MailKind::TwoFactorChanged,
        MailKind::RecoveryCodesReset,
        MailKind::RecoveryCodeUsed,
        MailKind::EmailTransferVerify,
        MailKind::EmailChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::PasswordChanged => "password_changed",
            Self::EmailOtpSetup => "email_otp_setup",
            Self::EmailOtpChallenge => "email_otp_challenge",
            Self::TwoFactorChanged => "two_factor_changed",
            Self::RecoveryCodesReset => "recovery_codes_reset",
            Self::RecoveryCodeUsed => "recovery_code_used",
            Self::EmailTransferVerify => "email_transfer_verify",
            Self::EmailChanged => "email_changed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}
