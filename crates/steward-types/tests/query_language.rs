//! Parsing, canonical printing and evaluation of the query language: every operator, precedence, literals,
//! missing-field semantics, and the serde and OpenAPI forms of `Query`.

use serde_json::{Value, json};
use steward_types::query::{CompareOp, Expr, Literal, Path, Query, Segment};

fn query(source: &str) -> Query {
    Query::parse(source).unwrap_or_else(|error| panic!("{source:?}: {}", error.render(source)))
}

fn facts() -> Value {
    json!({
        "name": "web1",
        "state": "online",
        "hostname": "web1.example.com",
        "arch": "x86_64",
        "hypervisor": "kvm",
        "os": { "id": "debian", "id_like": "", "name": "Debian GNU/Linux", "version_id": "12",
                "version": "12 (bookworm)", "pretty_name": "Debian GNU/Linux 12 (bookworm)" },
        "kernel": { "release": "6.1.0-18-amd64", "version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1" },
        "cpu": { "count": 4, "model": "AMD EPYC 7763" },
        "memory": { "total_bytes": 8_589_934_592u64, "total_mb": 8192, "swap_total_bytes": 0, "swap_total_mb": 0 },
        "fs": {
            "/": { "used_pct": 42.5, "size_bytes": 21_474_836_480u64, "used_bytes": 9_126_805_504u64,
                   "available_bytes": 12_348_030_976u64, "size_gb": 20.0, "type": "ext4", "device": "/dev/vda1" },
            "/var/lib/data": { "used_pct": 91.0, "size_bytes": 1, "used_bytes": 1, "available_bytes": 0,
                               "size_gb": 0.0, "type": "xfs", "device": "/dev/vdb" }
        },
        "disk": { "vda": { "size_bytes": 21_474_836_480u64, "size_gb": 20.0, "model": "", "rotational": false,
                           "read_only": false } },
        "interface": { "eth0": { "mac": "52:54:00:12:34:56", "state": "up", "mtu": 1500,
                                 "addresses": ["10.0.0.5/24", "fe80::5054:ff:fe12:3456/64"] } },
        "addresses": ["10.0.0.5", "fe80::5054:ff:fe12:3456"],
        "package": { "openssh-server": { "version": "1:9.2p1-2+deb12u2", "arch": "amd64", "manager": "dpkg" } },
        "packages": ["bash", "openssh-server"]
    })
}

/// Asserts whether `source` matches the sample facts.
fn check(source: &str, expected: bool) {
    assert_eq!(query(source).matches(&facts()), expected, "{source}");
}

#[test]
fn equality_and_inequality() {
    check(r#"os.id = "debian""#, true);
    check(r#"os.id = "Debian""#, false);
    check(r#"os.id != "ubuntu""#, true);
    check(r#"os.id != "debian""#, false);
    check("cpu.count = 4", true);
    check("cpu.count = 4.0", true);
    check("cpu.count != 4", false);
    check("disk[\"vda\"].rotational = false", true);
    check("disk[\"vda\"].rotational != false", false);
    check("fs[\"/\"].used_pct = 42.5", true);
}

#[test]
fn ordering_on_numbers() {
    check("cpu.count < 5", true);
    check("cpu.count < 4", false);
    check("cpu.count <= 4", true);
    check("cpu.count > 3", true);
    check("cpu.count > 4", false);
    check("cpu.count >= 4", true);
    check("cpu.count >= 4.5", false);
    check("memory.total_mb > -1", true);
    check("memory.swap_total_mb <= 0", true);
    check("fs[\"/\"].used_pct < 42.51", true);
    check("memory.total_bytes >= 8589934592", true);
}

#[test]
fn glob_match() {
    check(r#"package["openssh-server"].version ~ "1:9.*""#, true);
    check(r#"package["openssh-server"].version ~ "1:8.*""#, false);
    check(r#"hostname ~ "web?.example.com""#, true);
    check(r#"hostname ~ "WEB*""#, false);
    check(r#"hostname ~ "web""#, false);
    check(r#"kernel.release ~ "*-amd64""#, true);
}

#[test]
fn membership_in_a_literal_list() {
    check(r#"os.id in ["debian", "ubuntu"]"#, true);
    check(r#"os.id in ["rhel", "sles"]"#, false);
    check(r#"os.id in []"#, false);
    check("cpu.count in [2, 4, 8]", true);
    check("cpu.count in [1]", false);
    check("disk[\"vda\"].rotational in [true]", false);
}

#[test]
fn contains_on_lists_and_strings() {
    check(r#"addresses contains "10.0.0.5""#, true);
    check(r#"addresses contains "10.0.0""#, false);
    check(r#"packages contains "openssh-server""#, true);
    check(r#"packages contains "nginx""#, false);
    check(r#"interface["eth0"].addresses contains "10.0.0.5/24""#, true);
    check(r#"os.pretty_name contains "bookworm""#, true);
    check(r#"os.pretty_name contains "Bookworm""#, false);
}

#[test]
fn exists_tests_presence() {
    check("exists hostname", true);
    check("exists zvm", false);
    check("exists zvm.userid", false);
    check(r#"exists fs["/"]"#, true);
    check(r#"exists fs["/srv"]"#, false);
    check(r#"exists fs["/"].used_pct"#, true);
    check(r#"exists package["openssh-server"]"#, true);
    check(r#"exists package["nginx"].version"#, false);
    check("exists fs", true);
}

#[test]
fn missing_fields_make_every_comparison_false() {
    for source in [
        r#"zvm.userid = "LINUX01""#,
        r#"zvm.userid != "LINUX01""#,
        r#"zvm.userid ~ "*""#,
        r#"zvm.userid in ["LINUX01"]"#,
        r#"zvm.userid contains """#,
        "zvm.cpus_total < 1000",
        "zvm.cpus_total >= 0",
        r#"fs["/srv"].used_pct < 101"#,
        r#"fs["/srv"].used_pct != 1"#,
        r#"interface["eth9"].addresses contains "10.0.0.5/24""#,
    ] {
        check(source, false);
        check(&format!("not {source}"), true);
        check(&format!("not ({source})"), true);
    }
    // Without an inventory only `name` and `state` exist.
    let bare = json!({ "name": "new1", "state": "offline" });
    assert!(query(r#"state = "offline""#).matches(&bare));
    assert!(!query(r#"hostname != "x""#).matches(&bare));
    assert!(query(r#"not exists hostname"#).matches(&bare));
}

#[test]
fn values_of_the_wrong_type_in_the_document_do_not_match() {
    let odd = json!({ "cpu": { "count": "4" }, "os": { "id": 7 }, "addresses": 5, "hostname": null });
    for source in [
        "cpu.count = 4",
        "cpu.count != 4",
        "cpu.count > 1",
        r#"os.id != "x""#,
        r#"os.id ~ "*""#,
        r#"addresses contains "10.0.0.5""#,
        r#"hostname != "x""#,
        "exists hostname",
    ] {
        assert!(!query(source).matches(&odd), "{source}");
    }
}

#[test]
fn boolean_connectives() {
    check(r#"os.id = "debian" and cpu.count >= 2 and fs["/"].used_pct < 90"#, true);
    check(r#"os.id = "debian" and cpu.count >= 8"#, false);
    check(r#"os.id = "rhel" or cpu.count >= 2"#, true);
    check(r#"os.id = "rhel" or cpu.count >= 8"#, false);
    check(r#"not os.id = "rhel""#, true);
    check(r#"not not os.id = "debian""#, true);
}

#[test]
fn precedence_is_or_then_and_then_not() {
    // `a or b and c` is `a or (b and c)`.
    check(r#"os.id = "debian" or os.id = "x" and cpu.count = 0"#, true);
    check(r#"(os.id = "debian" or os.id = "x") and cpu.count = 0"#, false);
    // `not a and b` is `(not a) and b`.
    check(r#"not os.id = "x" and cpu.count = 4"#, true);
    check(r#"not (os.id = "debian" and cpu.count = 0)"#, true);
    check(r#"not os.id = "debian" and cpu.count = 0"#, false);

    let a = query(r#"arch = "a" or arch = "b" and not arch = "c""#);
    let cmp = |value: &str| Expr::Compare {
        path: Path(vec![Segment::Field("arch".into())]),
        op: CompareOp::Eq,
        value: Literal::String(value.into()),
    };
    assert_eq!(a.expr(), &Expr::Or(vec![cmp("a"), Expr::And(vec![cmp("b"), Expr::Not(Box::new(cmp("c")))])]));
}

#[test]
fn keywords_are_case_insensitive() {
    check(r#"os.id = "x" Or cpu.count = 4"#, true);
    check(r#"NOT EXISTS zvm AND addresses CONTAINS "10.0.0.5" AND cpu.count IN [4]"#, true);
    check("disk[\"vda\"].rotational = FALSE", true);
}

#[test]
fn string_escapes() {
    let q = query(r#"hostname = "a\"b\\c\nd\te\r\u{1F600}\u{e9}""#);
    let Expr::Compare { value: Literal::String(s), .. } = q.expr() else { panic!("{:?}", q.expr()) };
    assert_eq!(s, "a\"b\\c\nd\te\r😀é");
    assert_eq!(q.canonical(), "hostname = \"a\\\"b\\\\c\\nd\\te\\r😀é\"");
    let q = query("hostname = \"\\u{7}\"");
    assert_eq!(q.canonical(), "hostname = \"\\u{7}\"");
}

#[test]
fn numbers() {
    for (source, value) in [("0", 0.0), ("-3", -3.0), ("2.5", 2.5), ("-0.25", -0.25), ("007", 7.0)] {
        let q = query(&format!("cpu.count = {source}"));
        assert_eq!(
            q.expr(),
            &Expr::Compare {
                path: Path(vec![Segment::Field("cpu".into()), Segment::Field("count".into())]),
                op: CompareOp::Eq,
                value: Literal::Number(value),
            }
        );
    }
    assert_eq!(query("cpu.count>=2").canonical(), "cpu.count >= 2");
    assert_eq!(query("cpu.count = 2.50").canonical(), "cpu.count = 2.5");
}

#[test]
fn canonical_form_is_minimally_parenthesized() {
    for (source, canonical) in [
        (r#"  os.id="debian"   AND  cpu.count>=2 "#, r#"os.id = "debian" and cpu.count >= 2"#),
        ("((exists zvm))", "exists zvm"),
        ("(exists zvm and exists os) and exists cpu", "exists zvm and exists os and exists cpu"),
        ("exists zvm or (exists os or exists cpu)", "exists zvm or exists os or exists cpu"),
        ("exists zvm or (exists os and exists cpu)", "exists zvm or exists os and exists cpu"),
        ("(exists zvm or exists os) and exists cpu", "(exists zvm or exists os) and exists cpu"),
        ("not (exists zvm or exists os)", "not (exists zvm or exists os)"),
        ("not (exists zvm and exists os)", "not (exists zvm and exists os)"),
        ("not (not exists zvm)", "not not exists zvm"),
        ("(not exists zvm) and exists os", "not exists zvm and exists os"),
        (r#"fs [ "/" ] . used_pct<90"#, r#"fs["/"].used_pct < 90"#),
        (r#"os.id in ["a","b" ,"c"]"#, r#"os.id in ["a", "b", "c"]"#),
        ("os.id in [ ]", "os.id in []"),
    ] {
        let q = query(source);
        assert_eq!(q.canonical(), canonical, "{source}");
        assert_eq!(q.expr().to_string(), canonical);
        assert_eq!(query(canonical).expr(), q.expr(), "{source}");
    }
}

#[test]
fn query_keeps_its_source_text() {
    let source = r#"os.id = "debian"  AND cpu.count >= 2"#;
    let q = query(source);
    assert_eq!(q.as_str(), source);
    assert_eq!(q.to_string(), source);
    assert_eq!(source.parse::<Query>().map(|q| q.as_str().to_owned()).ok().as_deref(), Some(source));
    assert_eq!(q, query(source));
    assert_ne!(q, query(&q.canonical()));
}

#[test]
fn serde_uses_the_text_and_validates_it() {
    let q = query(r#"hypervisor = "zvm""#);
    assert_eq!(serde_json::to_value(&q).ok(), Some(json!("hypervisor = \"zvm\"")));
    let back: Query = serde_json::from_value(json!("hypervisor = \"zvm\"")).expect("valid query");
    assert_eq!(back, q);
    let error = serde_json::from_value::<Query>(json!("hypervisor = zvm")).expect_err("invalid query");
    assert_eq!(
        error.to_string(),
        r#"invalid query: at column 14: expected a string in double quotes (write "zvm"), found "zvm""#
    );
    assert!(serde_json::from_value::<Query>(json!(42)).is_err());
}

#[test]
fn openapi_schema_is_a_string() {
    use utoipa::{PartialSchema, ToSchema};
    let schema = serde_json::to_value(Query::schema()).expect("schema serializes");
    assert_eq!(schema["type"], "string");
    assert_eq!(schema["maxLength"], 4096);
    assert!(schema["description"].as_str().is_some_and(|d| d.contains("query")));
    assert_eq!(Query::name(), "Query");
}
