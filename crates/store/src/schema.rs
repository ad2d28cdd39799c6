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
        last_origin -> Nullable<Text>,
        last_language -> Nullable<Text>,
    }
}

diesel::table! {
    rate_limits (limit_name, key_hash) {
        limit_name -> Text,
        key_hash -> Text,
        window_start_ms -> BigInt,
        count -> Integer,
    }
}

diesel::table! {
    otps (id) {
        id -> BigInt,
        user_id -> BigInt,
        purpose -> Text,
        code_hash -> Text,
        attempts -> Integer,
        expires_at_ms -> BigInt,
        created_at_ms -> BigInt,
        origin -> Text,
        language -> Text,
        target -> Nullable<Text>,
    }
}

diesel::table! {
    outbox (id) {
        id -> BigInt,
        origin -> Text,
        kind -> Text,
        backend -> Text,
        recipient_masked -> Text,
        payload -> Nullable<Text>,
        status -> Text,
        attempts -> Integer,
        next_attempt_at_ms -> BigInt,
        lease_until_ms -> Nullable<BigInt>,
        leased_by -> Nullable<Text>,
        last_error -> Nullable<Text>,
        created_at_ms -> BigInt,
        sent_at_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    instance_secrets (name) {
        name -> Text,
        value -> Text,
        created_at_ms -> BigInt,
    }
}

diesel::joinable!(otps -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(users, otps);

diesel::table! {
    refresh_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        token_hash -> Text,
        family_id -> Text,
        created_at_ms -> BigInt,
        expires_at_ms -> BigInt,
        revoked_at_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    backoffs (limit_name, key_hash) {
        limit_name -> Text,
        key_hash -> Text,
        failures -> Integer,
        blocked_until_ms -> BigInt,
        last_failure_ms -> BigInt,
    }
}

diesel::table! {
    replicas (id) {
        id -> Text,
        last_seen_ms -> BigInt,
    }
}

diesel::table! {
    email_otp_methods (user_id) {
        user_id -> BigInt,
        email -> Nullable<Text>,
        setup_pending -> Bool,
        enabled_at_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    totp_secrets (user_id) {
        user_id -> BigInt,
        secret_enc -> Nullable<Text>,
        pending_secret_enc -> Nullable<Text>,
        enabled_at_ms -> Nullable<BigInt>,
        last_step -> Nullable<BigInt>,
    }
}

diesel::table! {
    recovery_codes (id) {
        id -> BigInt,
        user_id -> BigInt,
        code_hash -> Text,
        created_at_ms -> BigInt,
        used_at_ms -> Nullable<BigInt>,
    }
}
