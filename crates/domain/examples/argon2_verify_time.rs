//! Times argon2id verifications with the default (OWASP) parameters: the unit of the login
//! throughput ceiling. Used by bench/login.
//!
//!     cargo run --release -p authd-domain --example argon2_verify_time [ROUNDS] [THREADS]
//!
//! Prints the milliseconds one verification takes while THREADS (default 1) verify at once,
//! each ROUNDS times; the ceiling is THREADS ÷ that time. Timed with one thread per core, it
//! counts what the cores lose to each other (argon2's 19 MiB per verification shares the
//! caches and the memory bus): on the 2-core development machine one verification alone
//! takes about 17 ms, two at once about 22 ms each.

use std::time::Instant;

use authd_domain::{Argon2Params, Password, PasswordHash};

#[expect(clippy::print_stdout, reason = "a benchmark prints its result")]
fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let threads: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let params = Argon2Params::default();
    let hash = PasswordHash::create(
        &Password::parse("Correct1horse").unwrap_or_else(|_| unreachable!()),
        &params,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let start = std::sync::Barrier::new(threads as usize);
    let per_thread: Vec<f64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (hash, start) = (&hash, &start);
                s.spawn(move || {
                    // The same call the server makes: working memory reused between
                    // verifications.
                    let mut memory = Vec::new();
                    let _ = hash.verify_with_memory("Correct1horse", &mut memory);
                    start.wait();
                    let t = Instant::now();
                    for _ in 0..rounds {
                        let _ = hash.verify_with_memory("Correct1horse", &mut memory);
                    }
                    t.elapsed().as_secs_f64() / f64::from(rounds)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or(f64::NAN))
            .collect()
    });
    let per = per_thread.iter().sum::<f64>() / f64::from(threads);
    println!("{:.3}", per * 1000.0);
}
