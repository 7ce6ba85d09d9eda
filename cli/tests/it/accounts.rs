//! `hookstream accounts|keys|audit`: operators' changes, each audited exactly once.

use std::process::Output;

use hookstream_testkit::TestDatabase;
use serde_json::Value;

use crate::command::command;

async fn hookstream(db: &TestDatabase, args: &[&str]) -> Output {
    command(db, args).env("USER", "alice").output().await.expect("run hookstream")
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[tokio::test]
async fn operators_manage_accounts_and_keys_and_each_change_is_audited_once() {
    let db = TestDatabase::new().await;
    let id = stdout(
        &hookstream(&db, &["accounts", "create", "--name", "Acme", "--tier", "medium"]).await,
    );
    stdout(&hookstream(&db, &["accounts", "set-tier", &id, "large"]).await);
    stdout(
        &hookstream(
            &db,
            &["accounts", "set-limit", &id, "delivery", "--rate", "700", "--burst", "900"],
        )
        .await,
    );
    let key = stdout(&hookstream(&db, &["keys", "issue", "--account", &id, "--name", "ci"]).await);
    assert!(key.starts_with("hs_"), "the key is printed once: {key}");
    let shown: Value =
        serde_json::from_str(&stdout(&hookstream(&db, &["accounts", "show", &id]).await))
            .expect("json");
    assert_eq!(shown["account"]["tier"], "large");
    assert_eq!(shown["effective_delivery_limit"]["per_second"], 700);
    let default = hookstream_core::tier::Tier::Large.default_ingest_limit().per_second;
    assert_eq!(shown["effective_ingest_limit"]["per_second"], default, "the large tier's default");
    let key_id = shown["keys"][0]["id"].as_str().expect("key id").to_owned();
    assert!(!shown.to_string().contains(&key), "the key itself is never shown again");
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE key_hash = sha256($1::bytea)")
            .bind(key.as_bytes())
            .fetch_one(&db.pool)
            .await
            .expect("hash");
    assert_eq!(stored, 1, "stored as its SHA-256 only");
    stdout(&hookstream(&db, &["keys", "revoke", "--account", &id, "--key-id", &key_id]).await);
    let again = hookstream(&db, &["keys", "revoke", "--account", &id, "--key-id", &key_id]).await;
    assert!(!again.status.success(), "revoking twice is an error and changes nothing");
    let listed = stdout(&hookstream(&db, &["accounts", "list"]).await);
    assert!(listed.contains("Acme"));

    let audit = stdout(&hookstream(&db, &["audit", "--account", &id, "--json"]).await);
    let entries: Vec<Value> =
        audit.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let actions: Vec<&str> =
        entries.iter().map(|e| e["action"].as_str().unwrap_or_default()).collect();
    assert_eq!(
        actions,
        ["account.create", "account.update", "account.update", "api_key.issue", "api_key.revoke"],
        "each change once, in order"
    );
    assert!(entries.iter().all(|e| e["actor"] == "operator:alice"));
    assert_eq!(entries[1]["before"]["tier"], "medium");
    assert_eq!(entries[1]["after"]["tier"], "large");
    let bad = hookstream(&db, &["accounts", "set-tier", &id, "gigantic"]).await;
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test]
async fn an_operator_expunges_an_events_response_bodies_and_it_is_audited() {
    let db = TestDatabase::new().await;
    let account = stdout(&hookstream(&db, &["accounts", "create", "--name", "Acme"]).await);
    let event = hookstream_core::EventId::new().to_string();
    sqlx::query(
        "INSERT INTO deliveries (account_id, event_id, endpoint_id, event_type, state, attempts, \
         received_at) VALUES ($1::uuid, $2, gen_random_uuid(), 'subscriber.created', 'delivered', 1, now())",
    )
    .bind(&account)
    .bind(&event)
    .execute(&db.pool)
    .await
    .expect("delivery");
    sqlx::query(
        "INSERT INTO delivery_attempts (account_id, event_id, endpoint_id, attempt, outcome, \
         http_status, response_body) VALUES ($1::uuid, $2, gen_random_uuid(), 1, 'delivered', 200, 'ok: jane')",
    )
    .bind(&account)
    .bind(&event)
    .execute(&db.pool)
    .await
    .expect("attempt");

    let out = stdout(&hookstream(&db, &["events", "expunge", "--account", &account, &event]).await);
    let removed: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(removed["response_bodies"], 1, "{out}");
    assert_eq!(removed["dead_letters"], 0, "{out}");
    let audit = stdout(&hookstream(&db, &["audit", "--account", &account, "--json"]).await);
    assert!(
        audit.contains("\"event.expunge\"") && audit.contains("operator:alice"),
        "audited as the operator: {audit}"
    );

    let other = hookstream_core::EventId::new().to_string();
    let missing = hookstream(&db, &["events", "expunge", "--account", &account, &other]).await;
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.trim().ends_with(&format!("has no event {other}")), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}
