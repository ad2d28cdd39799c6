//! What the routes call: the rules that several calls share, written once. Route modules
//! parse input, call into here and shape the answer; they never import each other.

pub mod accounts;
pub mod addresses;
pub mod codes;
pub mod email_otp;
pub mod passwords;
pub mod recovery_codes;
pub mod sessions;
pub mod totp;
pub mod two_factor;
