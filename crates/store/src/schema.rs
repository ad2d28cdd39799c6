//! One Diesel schema for both backends; the migrations in `migrations/sqlite` and
//! `migrations/postgres` must produce tables that match it.

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
        password_hash -> Nullable<Text>,
        disabled -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}
