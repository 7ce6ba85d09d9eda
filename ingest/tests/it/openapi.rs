//! The served OpenAPI document is generated from the code and equals the checked-in file.

use crate::support::Ingest;

#[tokio::test]
async fn the_checked_in_openapi_document_is_current() {
    let generated = hookstream_ingest::openapi_document();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let Some(checked_in) = hookstream_testkit::checked_in_openapi(&generated, path) else {
        return; // rewritten (UPDATE_OPENAPI)
    };
    let ingest = Ingest::start().await;
    let served =
        ingest.http.get(format!("{}/openapi.json", ingest.base)).send().await.expect("get");
    assert_eq!(served.status(), 200);
    assert_eq!(served.text().await.expect("text"), checked_in);
}
