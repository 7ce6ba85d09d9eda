//! The served OpenAPI document is generated from the code and equals the checked-in file.

use crate::support::Ingest;

const CHECKED_IN: &str = include_str!("../../openapi.json");

#[tokio::test]
async fn the_checked_in_openapi_document_is_current() {
    let generated = hookstream_ingest::openapi_document();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        std::fs::write(path, &generated).expect("write openapi.json");
        return;
    }
    assert_eq!(
        CHECKED_IN, generated,
        "ingest/openapi.json is stale: regenerate it with UPDATE_OPENAPI=1 cargo test -p hookstream-ingest openapi"
    );
    let ingest = Ingest::start().await;
    let served =
        ingest.http.get(format!("{}/openapi.json", ingest.base)).send().await.expect("get");
    assert_eq!(served.status(), 200);
    assert_eq!(served.text().await.expect("text"), CHECKED_IN);
}
