//! The REST API through HTTP against a real server: authentication, roles, the error contract, bad input,
//! enrollment tokens, groups and the audit trail.

mod support;

use serde_json::json;
use support::Server;

#[test]
fn health_and_openapi_need_no_token_but_everything_else_does() {
    let server = Server::start();
    let anonymous = server.api().with_token(None);
    let health = anonymous.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "ok");
    let openapi = anonymous.get("/openapi.json");
    assert_eq!(openapi.status, 200);
    assert!(openapi.body["paths"]["/api/v1/systems"].is_object());

    for path in ["/systems", "/groups", "/users", "/audit", "/tokens", "/enrollment-tokens", "/whoami"] {
        let answer = anonymous.get(path);
        assert_eq!(answer.status, 401, "{path}");
        assert_eq!(answer.error_code(), "unauthorized", "{path}");
        assert!(answer.error_message().contains("Authorization"), "{path}: {}", answer.error_message());
        assert!(answer.body["error"]["details"].is_object());
    }
    let wrong = server.api().with_token(Some("stw_not-a-real-token"));
    let answer = wrong.get("/systems");
    assert_eq!(answer.status, 401);
    assert!(answer.error_message().contains("not known"));
}

#[test]
fn roles_limit_what_a_token_may_change() {
    let server = Server::start();
    let api = server.api();
    assert_eq!(api.post("/users", json!({"name": "vera", "role": "viewer"})).status, 201);
    assert_eq!(api.post("/users", json!({"name": "otto", "role": "operator"})).status, 201);
    let viewer_token =
        api.post("/tokens", json!({"name": "t", "user": "vera"})).body["secret"].as_str().unwrap().to_string();
    let operator_token =
        api.post("/tokens", json!({"name": "t", "user": "otto"})).body["secret"].as_str().unwrap().to_string();
    let viewer = api.with_token(Some(&viewer_token));
    let operator = api.with_token(Some(&operator_token));

    assert_eq!(viewer.get("/whoami").body["role"], "viewer");
    assert_eq!(viewer.get("/systems").status, 200);
    assert_eq!(viewer.get("/groups").status, 200);
    for (method, path, body) in [
        ("POST", "/groups", json!({"name": "g"})),
        ("POST", "/enrollment-tokens", json!({})),
        ("POST", "/tokens", json!({"name": "mine"})),
        ("POST", "/users", json!({"name": "x", "role": "viewer"})),
    ] {
        let answer = viewer.send(method, path, body);
        assert_eq!(answer.status, 403, "{method} {path}: {:?}", answer.body);
        assert_eq!(answer.error_code(), "forbidden");
    }
    assert_eq!(operator.post("/groups", json!({"name": "ops"})).status, 201);
    assert_eq!(operator.post("/enrollment-tokens", json!({})).status, 201);
    assert_eq!(operator.post("/tokens", json!({"name": "second"})).status, 201);
    assert_eq!(operator.post("/users", json!({"name": "y", "role": "viewer"})).status, 403);
    assert_eq!(operator.post("/tokens", json!({"name": "for-vera", "user": "vera"})).status, 403);
    // Operators see only their own tokens; administrators see everybody's.
    let own = operator.get("/tokens").body["items"].as_array().unwrap().clone();
    assert!(own.iter().all(|token| token["user"] == "otto"), "{own:?}");
    assert_eq!(operator.get("/tokens?user=vera").status, 403);
    assert!(api.get("/tokens").body["items"].as_array().unwrap().len() >= 4);

    // Changes are audited with what was before and what is after.
    assert_eq!(api.send("PATCH", "/users/otto", json!({"role": "viewer"})).status, 200);
    let record = api.get("/audit?action=user.update&limit=1").body["items"][0].clone();
    assert_eq!(record["details"], json!({"before": {"role": "operator"}, "after": {"role": "viewer"}}));
    assert_eq!(operator.post("/groups", json!({"name": "too-late"})).status, 403);

    // The last administrator cannot be demoted or deleted.
    let answer = api.send("PATCH", "/users/admin", json!({"role": "viewer"}));
    assert_eq!(answer.status, 409, "{:?}", answer.body);
    assert_eq!(api.delete("/users/admin").status, 409);
    // Deleting a user takes its tokens with it.
    assert_eq!(api.delete("/users/vera").status, 204);
    assert_eq!(viewer.get("/systems").status, 401);
}

#[test]
fn malformed_requests_get_precise_errors_never_500() {
    let server = Server::start();
    let api = server.api();
    // (method, path, content type, body, status, error code, a fragment of the message)
    type Case = (&'static str, &'static str, Option<&'static str>, Option<Vec<u8>>, u16, &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/groups",
            Some("application/json"),
            Some(b"{\"name\": ".to_vec()),
            400,
            "bad_request",
            "not valid JSON",
        ),
        (
            "POST",
            "/groups",
            Some("application/json"),
            Some(br#"{"name":"a","colour":"red"}"#.to_vec()),
            422,
            "validation_failed",
            "unknown field `colour`",
        ),
        (
            "POST",
            "/groups",
            Some("application/json"),
            Some(br#"{"name": 7}"#.to_vec()),
            422,
            "validation_failed",
            "invalid type",
        ),
        (
            "POST",
            "/groups",
            Some("text/plain"),
            Some(br#"{"name":"a"}"#.to_vec()),
            415,
            "unsupported_media_type",
            "application/json",
        ),
        (
            "POST",
            "/groups",
            Some("application/json"),
            Some(vec![b' '; 2 * 1024 * 1024]),
            413,
            "payload_too_large",
            "larger than",
        ),
        (
            "POST",
            "/groups",
            Some("application/json"),
            Some(br#"{"name":"has space"}"#.to_vec()),
            422,
            "validation_failed",
            "name: must contain only",
        ),
        (
            "POST",
            "/groups",
            Some("application/json"),
            Some(br#"{"name":"q","query":"cpu.count >= \"two\""}"#.to_vec()),
            422,
            "validation_failed",
            "column",
        ),
        (
            "POST",
            "/groups",
            Some("application/json"),
            Some(br#"{"name":"q","query":"os.nmae = \"x\""}"#.to_vec()),
            422,
            "validation_failed",
            "os.name",
        ),
        ("GET", "/systems/no-such-system", None, None, 404, "not_found", "no-such-system"),
        ("GET", "/systems?colour=red", None, None, 400, "bad_request", "colour"),
        ("GET", "/systems?limit=ten", None, None, 400, "bad_request", "limit"),
        ("GET", "/systems?state=sleeping", None, None, 400, "bad_request", "state"),
        ("DELETE", "/tokens/not-a-uuid", None, None, 422, "validation_failed", "token ID"),
        ("GET", "/audit?after=yesterday", None, None, 422, "validation_failed", "after"),
        ("PUT", "/groups", None, None, 405, "method_not_allowed", "PUT"),
        ("GET", "/no/such/endpoint", None, None, 404, "not_found", "/api/v1/no/such/endpoint"),
        (
            "POST",
            "/enrollment-tokens",
            Some("application/json"),
            Some(br#"{"uses": 0}"#.to_vec()),
            422,
            "validation_failed",
            "uses",
        ),
        (
            "POST",
            "/enrollment-tokens",
            Some("application/json"),
            Some(br#"{"expires_in": "forever"}"#.to_vec()),
            422,
            "validation_failed",
            "expires_in",
        ),
        (
            "POST",
            "/tokens",
            Some("application/json"),
            Some(br#"{"name": "x", "expires_in": "0s"}"#.to_vec()),
            422,
            "validation_failed",
            "expires_in",
        ),
    ];
    for (method, path, content_type, body, status, code, fragment) in cases {
        let answer = api.raw(method, path, content_type, body);
        assert_eq!(answer.status, status, "{method} {path}: {:?}", answer.body);
        assert_eq!(answer.error_code(), code, "{method} {path}");
        assert!(
            answer.error_message().contains(fragment),
            "{method} {path}: {:?} lacks {fragment:?}",
            answer.error_message()
        );
    }
    // Nothing was created by any of the refused requests.
    assert_eq!(api.get("/groups").body["items"].as_array().unwrap().len(), 0);
    assert_eq!(api.get("/health").status, 200);
}

#[test]
fn enrollment_tokens_are_counted_and_expire() {
    let server = Server::start();
    let api = server.api();
    let anonymous = api.with_token(None);
    let created = api.post("/enrollment-tokens", json!({"uses": 1, "description": "lab"}));
    assert_eq!(created.status, 201);
    let secret = created.body["token"].as_str().unwrap().to_string();
    let csr = || test_csr("lab-host");
    let enroll = |token: &str| {
        anonymous.post(
            "/enrollments",
            json!({"token": token, "csr_pem": csr(), "hostname": "lab-host", "agent_version": "test"}),
        )
    };
    let first = enroll(&secret);
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert_eq!(first.body["system_name"], "lab-host");
    assert!(first.body["certificate_pem"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
    let second = enroll(&secret);
    assert_eq!(second.status, 401);
    assert!(second.error_message().contains("used up"), "{}", second.error_message());
    assert_eq!(enroll("ste_unknown").status, 401);

    let short = api.post("/enrollment-tokens", json!({"uses": 5, "expires_in": "1s"}));
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let late = enroll(short.body["token"].as_str().unwrap());
    assert_eq!(late.status, 401);
    assert!(late.error_message().contains("expired"), "{}", late.error_message());

    let bad_csr = anonymous.post(
        "/enrollments",
        json!({"token": api.post("/enrollment-tokens", json!({})).body["token"], "csr_pem": "garbage", "hostname": "h", "agent_version": "t"}),
    );
    assert_eq!(bad_csr.status, 422);
    assert!(bad_csr.error_message().contains("csr_pem"));
    // The refused enrollment took nothing: no system named "h".
    assert_eq!(api.get("/systems/h").status, 404);
    // Two systems with the same hostname get distinct names.
    let token = api.post("/enrollment-tokens", json!({"uses": 2})).body["token"].as_str().unwrap().to_string();
    assert_eq!(enroll(&token).body["system_name"], "lab-host-2");
}

#[test]
fn every_change_is_audited_without_secrets_and_secrets_are_stored_hashed() {
    let server = Server::start();
    let api = server.api();
    let token = api.post("/tokens", json!({"name": "ci"})).body["secret"].as_str().unwrap().to_string();
    let enrollment = api.post("/enrollment-tokens", json!({})).body["token"].as_str().unwrap().to_string();
    api.post("/groups", json!({"name": "web"}));
    api.post("/groups", json!({"name": "web"})); // conflict: audited as a failure
    api.delete("/groups/web");

    let records = api.get("/audit").body["items"].as_array().unwrap().clone();
    let actions: Vec<(String, String)> = records
        .iter()
        .map(|r| (r["action"].as_str().unwrap().to_string(), r["outcome"].as_str().unwrap().to_string()))
        .collect();
    for expected in [
        ("group.delete", "success"),
        ("group.create", "failure"),
        ("group.create", "success"),
        ("enrollment_token.create", "success"),
        ("token.create", "success"),
        ("user.create", "success"),
    ] {
        assert!(
            actions.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} missing from {actions:?}"
        );
    }
    let failure = records.iter().find(|r| r["outcome"] == "failure").unwrap();
    assert_eq!(failure["details"]["error"]["code"], "conflict");
    assert_eq!(failure["actor"], "admin");
    let filtered = api.get("/audit?action=group.").body["items"].as_array().unwrap().len();
    assert_eq!(filtered, 3);

    let everything = serde_json::to_string(&records).unwrap();
    for secret in [&token, &enrollment, &server.token] {
        assert!(!everything.contains(secret.as_str()), "a secret appears in the audit trail");
    }
    // The database holds hashes only: no secret appears in its files.
    for file in ["steward.db", "steward.db-wal"] {
        let bytes = std::fs::read(server.data_dir.join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for secret in [&token, &enrollment, &server.token] {
            assert!(!text.contains(secret.as_str()), "a secret is stored in {file}");
        }
    }
    // An anonymous caller cannot grow the trail by megabytes: recorded requests are bounded.
    let huge = "x".repeat(300_000);
    let refused = api
        .with_token(None)
        .post("/enrollments", json!({"token": "ste_bogus", "csr_pem": huge, "hostname": huge, "agent_version": huge}));
    assert_eq!(refused.status, 422);
    let latest = api.get("/audit?limit=1").body["items"][0].clone();
    assert_eq!(latest["action"], "system.enroll");
    assert!(latest.to_string().len() < 4096, "audit record of {} bytes", latest.to_string().len());

    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(server.data_dir.join("admin-token")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn groups_static_members_and_paging() {
    let server = Server::start();
    let api = server.api();
    let anonymous = api.with_token(None);
    let token = api.post("/enrollment-tokens", json!({"uses": 5})).body["token"].as_str().unwrap().to_string();
    for host in ["alpha", "beta", "gamma"] {
        let answer = anonymous.post(
            "/enrollments",
            json!({"token": token, "csr_pem": test_csr(host), "hostname": host, "agent_version": "test"}),
        );
        assert_eq!(answer.status, 201);
    }
    assert_eq!(api.post("/groups", json!({"name": "db", "description": "databases"})).status, 201);
    let added = api.post("/groups/db/members", json!({"systems": ["alpha", "beta"]}));
    assert_eq!(added.status, 200, "{:?}", added.body);
    assert_eq!(added.body["member_count"], 2);
    // All or nothing: one unknown system adds none.
    let refused = api.post("/groups/db/members", json!({"systems": ["gamma", "nope"]}));
    assert_eq!(refused.status, 404);
    assert_eq!(api.get("/groups/db").body["member_count"], 2);
    let members: Vec<String> = api.get("/groups/db/members").body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(members, ["alpha", "beta"]);
    assert_eq!(api.get("/systems?group=db").body["items"].as_array().unwrap().len(), 2);
    assert_eq!(api.delete("/groups/db/members/alpha").status, 204);
    assert_eq!(api.delete("/groups/db/members/alpha").status, 404);

    // Dynamic groups refuse hand-made membership changes; a query over systems without inventory uses names.
    let dynamic = api.post("/groups", json!({"name": "g-names", "query": "name ~ \"g*\""}));
    assert_eq!(dynamic.status, 201, "{:?}", dynamic.body);
    assert_eq!(dynamic.body["member_count"], 1);
    assert_eq!(api.post("/groups/g-names/members", json!({"systems": ["alpha"]})).status, 409);
    let updated = api.send("PATCH", "/groups/g-names", json!({"query": "name ~ \"*a\""}));
    assert_eq!(updated.body["member_count"], 3, "{:?}", updated.body);
    assert_eq!(api.send("PATCH", "/groups/db", json!({"query": "name = \"x\""})).status, 422);

    // Paging: limit 2 over three systems gives a cursor, and the second page ends the list.
    let first = api.get("/systems?limit=2");
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    let next = first.body["next"].as_str().unwrap().to_string();
    let second = api.get(&format!("/systems?limit=2&after={next}"));
    assert_eq!(second.body["items"].as_array().unwrap().len(), 1);
    assert!(second.body["next"].is_null());
}

/// A PEM certificate signing request for a fresh key, as an agent would send.
fn test_csr(hostname: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, hostname);
    params.serialize_request(&key).and_then(|csr| csr.pem()).expect("CSR")
}
