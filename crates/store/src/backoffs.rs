//! Guessing backoffs: consecutive failures per key, and until when the next attempt waits.
//!
//! An attempt is counted under two keys at once: a *network* key (the account seen from one
//! client network), whose wait grows quickly, and an *account* key (the account from every
//! network together), whose ceiling stops distributed guessing. Both are decided in one
//! transaction, so an attempt is either counted under both or under neither.

use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{BigInt, Integer, Text};

use crate::backend::sql;

use crate::schema::backoffs as b;
use crate::{AnyConnection, StoreError};

/// One row of the table: a limit name and the keyed hash of what it counts.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub limit: &'a str,
    pub hash: &'a str,
}

/// Until when (ms since the epoch) attempts under any of `keys` are refused; `None` when
/// they are not.
pub fn blocked_until(
    conn: &mut AnyConnection,
    keys: &[Key<'_>],
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    let mut until: Option<i64> = None;
    for k in keys {
        let row: Option<i64> = b::table
            .filter(b::limit_name.eq(k.limit))
            .filter(b::key_hash.eq(k.hash))
            .filter(b::blocked_until_ms.gt(now_ms))
            .select(b::blocked_until_ms)
            .first(conn)
            .optional()?;
        until = until.max(row);
    }
    Ok(until)
}

#[derive(QueryableByName)]
struct FailuresRow {
    #[diesel(sql_type = Integer)]
    failures: i32,
}

/// The outcome of asking to make an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The attempt may be made. It is already counted as a consecutive failure under both
    /// keys (a success clears them); `network_failures` and `account_failures` are the counts
    /// now on record, and later attempts wait until `network_until_ms` / `account_until_ms`
    /// (in the past when they need not).
    Admitted {
        network_failures: i32,
        account_failures: i32,
        network_until_ms: i64,
        account_until_ms: i64,
    },
    /// The network key waits until this instant (and the account, if at all, not longer);
    /// nothing was counted.
    NetworkRefused { blocked_until_ms: i64 },
    /// The whole account waits until this instant (the longer wait); nothing was counted.
    AccountRefused { blocked_until_ms: i64 },
}

/// One key's conditional count: `Ok(Some(failures, until))` when admitted (and counted),
/// `Ok(None)` with the wait read back when the key waits.
fn count_one(
    conn: &mut AnyConnection,
    key: Key<'_>,
    now_ms: i64,
    wait_ms: &dyn Fn(i32) -> i64,
) -> Result<Result<(i32, i64), i64>, DieselError> {
    let rows: Vec<FailuresRow> = sql(
        conn,
        "INSERT INTO backoffs (limit_name, key_hash, failures, blocked_until_ms, last_failure_ms) \
         VALUES ($1, $2, 1, 0, $3) \
         ON CONFLICT (limit_name, key_hash) DO UPDATE SET failures = backoffs.failures + 1, \
         last_failure_ms = $3 \
         WHERE backoffs.blocked_until_ms <= $3 \
         RETURNING failures",
    )
    .bind::<Text, _>(key.limit)
    .bind::<Text, _>(key.hash)
    .bind::<BigInt, _>(now_ms)
    .load(conn)?;
    let Some(failures) = rows.first().map(|r| r.failures) else {
        let until: i64 = b::table
            .filter(b::limit_name.eq(key.limit))
            .filter(b::key_hash.eq(key.hash))
            .select(b::blocked_until_ms)
            .first(conn)?;
        return Ok(Err(until));
    };
    let wait = wait_ms(failures);
    if wait <= 0 {
        return Ok(Ok((failures, 0)));
    }
    diesel::update(
        b::table
            .filter(b::limit_name.eq(key.limit))
            .filter(b::key_hash.eq(key.hash)),
    )
    .set(b::blocked_until_ms.eq(now_ms + wait))
    .execute(conn)?;
    Ok(Ok((failures, now_ms + wait)))
}

/// Admits one attempt, counting it as a failure under `network` and `account` before it is
/// checked, or refuses it while either key waits. Each key is one conditional upsert under
/// the row's lock, inside one transaction: parallel attempts cannot all slip in before the
/// first failure is on record (a flood gets no more tries than a sequence), and an attempt
/// the account refuses is not counted against the network either (the transaction is rolled
/// back).
pub fn attempt(
    conn: &mut AnyConnection,
    network: Key<'_>,
    account: Key<'_>,
    now_ms: i64,
    network_wait_ms: impl Fn(i32) -> i64,
    account_wait_ms: impl Fn(i32) -> i64,
) -> Result<Attempt, StoreError> {
    let mut refused: Option<Attempt> = None;
    let result = conn.transaction::<Attempt, DieselError, _>(|c| {
        let (network_failures, network_until_ms) =
            match count_one(c, network, now_ms, &network_wait_ms)? {
                Ok(counted) => counted,
                Err(until) => {
                    // Nothing was written. Report the longer wait: the attempt cannot succeed
                    // before the account's wait ends either.
                    let account_until: i64 = b::table
                        .filter(b::limit_name.eq(account.limit))
                        .filter(b::key_hash.eq(account.hash))
                        .select(b::blocked_until_ms)
                        .first(c)
                        .optional()?
                        .unwrap_or(0);
                    return Ok(if account_until > until {
                        Attempt::AccountRefused {
                            blocked_until_ms: account_until,
                        }
                    } else {
                        Attempt::NetworkRefused {
                            blocked_until_ms: until,
                        }
                    });
                }
            };
        match count_one(c, account, now_ms, &account_wait_ms)? {
            Ok((account_failures, account_until_ms)) => Ok(Attempt::Admitted {
                network_failures,
                account_failures,
                network_until_ms,
                account_until_ms,
            }),
            Err(until) => {
                // Undo the network's count: the attempt is not made.
                refused = Some(Attempt::AccountRefused {
                    blocked_until_ms: until,
                });
                Err(DieselError::RollbackTransaction)
            }
        }
    });
    match (result, refused) {
        (Ok(a), _) => Ok(a),
        (Err(DieselError::RollbackTransaction), Some(r)) => Ok(r),
        (Err(e), _) => Err(e.into()),
    }
}

/// A success ends the streaks of these keys.
pub fn clear(conn: &mut AnyConnection, keys: &[Key<'_>]) -> Result<(), StoreError> {
    for k in keys {
        diesel::delete(
            b::table
                .filter(b::limit_name.eq(k.limit))
                .filter(b::key_hash.eq(k.hash)),
        )
        .execute(conn)?;
    }
    Ok(())
}

/// Forgets streaks whose last failure is older than `before_ms` and that no longer refuse
/// anything (housekeeping).
pub fn purge_stale(
    conn: &mut AnyConnection,
    before_ms: i64,
    now_ms: i64,
) -> Result<usize, StoreError> {
    Ok(diesel::delete(
        b::table
            .filter(b::last_failure_ms.lt(before_ms))
            .filter(b::blocked_until_ms.le(now_ms)),
    )
    .execute(conn)?)
}
