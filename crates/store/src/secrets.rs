//! Keys generated on first start when the configuration gives none (development only), kept
//! in the database so restarts and every process on the same database agree on them.

use diesel::prelude::*;

use crate::schema::instance_secrets;
use crate::{AnyConnection, StoreError};

/// Returns the stored value for `name`, storing `generate()` first if there is none. Safe when
/// several processes start at once: the first insert wins and everyone reads it.
pub fn get_or_create(
    conn: &mut AnyConnection,
    name: &str,
    generate: impl FnOnce() -> String,
    now_ms: i64,
) -> Result<String, StoreError> {
    let found = instance_secrets::table
        .find(name)
        .select(instance_secrets::value)
        .first::<String>(conn)
        .optional()?;
    if let Some(v) = found {
        return Ok(v);
    }
    // In a savepoint of its own: inside a transaction (a writer's batch), PostgreSQL refuses
    // every statement after a failed one, so the lost race must be rolled back before the
    // winner's value is read.
    let value = generate();
    match conn.transaction(|c| {
        diesel::insert_into(instance_secrets::table)
            .values((
                instance_secrets::name.eq(name),
                instance_secrets::value.eq(&value),
                instance_secrets::created_at_ms.eq(now_ms),
            ))
            .execute(c)
    }) {
        Ok(_)
        | Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(instance_secrets::table
        .find(name)
        .select(instance_secrets::value)
        .first(conn)?)
}
