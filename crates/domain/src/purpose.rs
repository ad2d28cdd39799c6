//! What a one-time code is for.

/// What a code is for. Codes of one purpose never satisfy another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    PasswordReset,
    /// Confirms the address a user sets up for email OTP (the address is the code's target).
    EmailOtpSetup,
    /// A second-factor code mailed to the confirmed email OTP address.
    EmailOtpChallenge,
    /// Confirms the new address of an email transfer (the address is the code's target).
    EmailTransfer,
}

impl Purpose {
    pub const ALL: [Purpose; 4] = [
        Self::PasswordReset,
        Self::EmailOtpSetup,
        Self::EmailOtpChallenge,
        Self::EmailTransfer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::EmailOtpSetup => "email_otp_setup",
            Self::EmailOtpChallenge => "email_otp_challenge",
            Self::EmailTransfer => "email_transfer",
        }
    }
}
