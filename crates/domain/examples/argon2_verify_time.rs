//! Times one argon2id verification with the default (OWASP) parameters: the unit of the
//! login throughput ceiling (cores ÷ this time). Used by bench/login.
//!
//!     cargo run --release -p authd-domain --example argon2_verify_time [ROUNDS]

use std::time::Instant;

use authd_domain::{Argon2Params, Password, PasswordHash};

#[expect(clippy::print_stdout, reason = "a benchmark prints its result")]
fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let params = Argon2Params::default();
    let hash = PasswordHash::create(
        &Password::parse("Correct1horse").unwrap_or_else(|_| unreachable!()),
        &params,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // The same call the server makes: working memory reused between verifications.
    let mut memory = Vec::new();
    let _ = hash.verify_with_memory("Correct1horse", &mut memory);
    let start = Instant::now();
    for _ in 0..rounds {
        let _ = hash.verify_with_memory("Correct1horse", &mut memory);
    }
    let per = start.elapsed().as_secs_f64() / f64::from(rounds);
    println!("{:.3}", per * 1000.0);
}
