//! Accounts.

use authd_domain::{Email, PasswordHash};
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;

use crate::schema::users;
use crate::{AnyConnection, StoreError};

diesel::define_sql_function! {
    /// SQL `lower()`: lookups by address go through the unique index on `lower(email)`.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    /// Parsed on the way out: a stored value that is no address is `StoreError::Corrupt`.
    #[diesel(deserialize_as = String)]
    pub email: Email,
    #[diesel(deserialize_as = Option<String>)]
    password_hash: Option<String>,
    pub disabled: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// The origin the user last asked a mail for, if any request named one.
    pub last_origin: Option<String>,
    /// The language of that mail.
    pub last_language: Option<String>,
}

impl User {
    /// The stored argon2 hash, or `None` for an account created without a password.
    pub fn password_hash(&self) -> Result<Option<PasswordHash>, StoreError> {
        self.password_hash
            .clone()
            .map(PasswordHash::from_stored)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

/// Creates an account. `Duplicate` when the address is taken (the unique index decides).
/// Its own transaction is for the CLI, which calls it on a pooled connection outside any
/// write batch; inside a `Store::run` job it is only a nested savepoint.
pub fn create(
    conn: &mut AnyConnection,
    email: &Email,
    hash: Option<&PasswordHash>,
) -> Result<User, StoreError> {
    conn.transaction(|conn| {
        let at = now();
        diesel::insert_into(users::table)
            .values((
                users::email.eq(email.as_str()),
                users::password_hash.eq(hash.map(PasswordHash::as_str)),
                users::disabled.eq(false),
                users::created_at.eq(at),
                users::updated_at.eq(at),
            ))
            .execute(conn)?;
        Ok(users::table
            .filter(lower(users::email).eq(email.as_str()))
            .select(User::as_select())
            .first(conn)?)
    })
}

pub fn find_by_email(conn: &mut AnyConnection, email: &Email) -> Result<Option<User>, StoreError> {
    Ok(users::table
        .filter(lower(users::email).eq(email.as_str()))
        .select(User::as_select())
        .first(conn)
        .optional()?)
}

pub fn find_by_id(conn: &mut AnyConnection, id: i64) -> Result<Option<User>, StoreError> {
    Ok(users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .optional()?)
}

pub fn list(conn: &mut AnyConnection) -> Result<Vec<User>, StoreError> {
    Ok(users::table
        .order(users::id.asc())
        .select(User::as_select())
        .load(conn)?)
}

/// Returns false when no account has that address.
pub fn set_disabled(
    conn: &mut AnyConnection,
    email: &Email,
    disabled: bool,
) -> Result<bool, StoreError> {
    let n = diesel::update(users::table.filter(lower(users::email).eq(email.as_str())))
        .set((users::disabled.eq(disabled), users::updated_at.eq(now())))
        .execute(conn)?;
    Ok(n == 1)
}

pub fn set_password(
    conn: &mut AnyConnection,
    user_id: i64,
    hash: &PasswordHash,
) -> Result<bool, StoreError> {
    let n = diesel::update(users::table.find(user_id))
        .set((
            users::password_hash.eq(hash.as_str()),
            users::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Remembers the origin and language a user asked a mail in, for later notices.
pub fn remember_mail_target(
    conn: &mut AnyConnection,
    user_id: i64,
    origin: &str,
    language: &str,
) -> Result<(), StoreError> {
    diesel::update(users::table.find(user_id))
        .set((
            users::last_origin.eq(Some(origin)),
            users::last_language.eq(Some(language)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Changes the login address. `Duplicate` when another account has it: the unique index
/// decides, inside the caller's transaction, so two users racing for one address cannot
/// both win.
pub fn set_email(
    conn: &mut AnyConnection,
    user_id: i64,
    email: &Email,
) -> Result<bool, StoreError> {
    let n = diesel::update(users::table.find(user_id))
        .set((users::email.eq(email.as_str()), users::updated_at.eq(now())))
        .execute(conn)?;
    Ok(n == 1)
}
