//! The served OpenAPI document is generated from the code and equals the checked-in file.

use crate::support::Api;

const CHECKED_IN: &str = include_str!("../../openapi.json");

#[tokio::test]
async fn the_checked_in_openapi_document_is_current() {
    let generated = hookstream_api::openapi_document();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        std::fs::write(path, &generated).expect("write openapi.json");
        return;
    }
    assert_eq!(
        CHECKED_IN, generated,
        "api/openapi.json is stale: regenerate it with UPDATE_OPENAPI=1 cargo test -p hookstream-api openapi"
    );
    let api = Api::start().await;
    let served = api.http.get(format!("{}/openapi.json", api.base)).send().await.expect("get");
    assert_eq!(served.status(), 200);
    assert_eq!(served.text().await.expect("text"), CHECKED_IN);
}
