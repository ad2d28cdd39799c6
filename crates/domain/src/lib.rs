#![doc = include_str!("../README.md")]

pub mod clock;
mod email;
mod password;
mod purpose;
pub mod sealed;
pub mod tokens;
pub mod two_factor;

pub use clock::Clock;
pub use email::{Email, EmailError, MAX_EMAIL_LEN};
pub use password::{
    Argon2Params, Password, PasswordHash, PasswordHashError, PasswordPolicyError, MAX_PASSWORD_LEN,
    MIN_PASSWORD_LEN,
};
pub use purpose::Purpose;
