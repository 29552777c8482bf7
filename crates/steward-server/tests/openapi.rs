//! The committed `openapi.json` must be what the code generates. Run with `UPDATE_OPENAPI=1` to rewrite it.

#[test]
fn committed_openapi_document_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi.json");
    let generated = steward_server::api::openapi_json();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p steward-server --test openapi` and commit it"
    );
}

#[test]
fn every_route_is_documented() {
    let document: serde_json::Value = serde_json::from_str(&steward_server::api::openapi_json()).unwrap();
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/api/v1/health",
        "/api/v1/whoami",
        "/api/v1/users",
        "/api/v1/users/{user}",
        "/api/v1/tokens",
        "/api/v1/tokens/{token}",
        "/api/v1/enrollment-tokens",
        "/api/v1/enrollment-tokens/{token}",
        "/api/v1/enrollments",
        "/api/v1/systems",
        "/api/v1/systems/{system}",
        "/api/v1/systems/{system}/inventory-history",
        "/api/v1/systems/{system}/refresh-inventory",
        "/api/v1/systems/{system}/commands",
        "/api/v1/groups",
        "/api/v1/groups/{group}",
        "/api/v1/groups/{group}/members",
        "/api/v1/groups/{group}/members/{system}",
        "/api/v1/audit",
    ] {
        assert!(paths.contains_key(path), "{path} is missing from the OpenAPI document");
    }
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
}
