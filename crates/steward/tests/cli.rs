//! The CLI against a real server: table output (snapshots, with IDs and times masked), JSON output, and
//! readable errors with a non-zero exit.

mod support;

use support::Server;

/// Masks what changes from run to run: UUIDs, RFC 3339 times, token secrets and ports.
fn mask(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let rest: String = chars[i..chars.len().min(i + 36)].iter().collect();
        if is_uuid(&rest) {
            out.push_str("<id>");
            i += 36;
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 24)].iter().collect();
        if is_timestamp(&rest) {
            out.push_str("<time>");
            i += 24;
            continue;
        }
        if chars[i..].starts_with(&['s', 't', 'w', '_']) || chars[i..].starts_with(&['s', 't', 'e', '_']) {
            let end = chars[i..].iter().position(|c| c.is_whitespace() || *c == '"').map_or(chars.len(), |n| i + n);
            out.push_str("<secret>");
            i = end;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

fn is_timestamp(text: &str) -> bool {
    let pattern = "dddd-dd-ddTdd:dd:dd.dddZ";
    text.len() == pattern.len()
        && text.chars().zip(pattern.chars()).all(|(c, p)| if p == 'd' { c.is_ascii_digit() } else { c == p })
}

#[test]
fn table_output() {
    let server = Server::start();
    let mut transcript = String::new();
    let mut run = |args: &[&str]| {
        let output = server.cli(args);
        transcript.push_str(&format!("$ steward {}\n", args.join(" ")));
        transcript.push_str(&mask(&String::from_utf8_lossy(&output.stdout)));
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.is_empty() {
            transcript.push_str(&format!("[stderr] {}", mask(&stderr)));
        }
        transcript.push_str(&format!("[exit {}]\n\n", output.status.code().unwrap_or(-1)));
    };
    run(&["whoami"]);
    run(&["users", "create", "vera", "--role", "viewer"]);
    run(&["users", "list"]);
    run(&["groups", "create", "web", "--query", "os.id = \"debian\" and cpu.count >= 2"]);
    run(&["groups", "create", "db", "--description", "database servers"]);
    run(&["groups", "create", "broken", "--query", "cpu.count >= \"two\""]);
    run(&["groups", "create", "typo", "--query", "os.nmae = \"debian\""]);
    run(&["groups", "list"]);
    run(&["groups", "members", "web"]);
    run(&["systems", "list"]);
    run(&["systems", "show", "nowhere"]);
    run(&["enrollment-tokens", "create", "--uses", "3", "--expires", "2h"]);
    run(&["groups", "delete", "db"]);
    run(&["audit", "list", "--action", "group."]);
    insta::assert_snapshot!(transcript);
}

#[test]
fn json_output_and_errors() {
    let server = Server::start();
    let created = server.cli_json(&["groups", "create", "web", "--query", "hypervisor = \"kvm\""]);
    assert_eq!(created["name"], "web");
    assert_eq!(created["kind"], "dynamic");
    let listed = server.cli_json(&["groups", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let token = server.cli_json(&["enrollment-tokens", "create"]);
    assert!(token["token"].as_str().unwrap().starts_with("ste_"));
    assert_eq!(token["uses"], 1);

    let unreachable = std::process::Command::new(support::steward_binary())
        .args(["--server", "http://127.0.0.1:9", "systems", "list"])
        .env("STEWARD_TOKEN", "x")
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(stderr.starts_with("error: cannot reach the Steward server at http://127.0.0.1:9"), "{stderr}");

    let unauthorized = server.cli_as("stw_wrong", &["systems", "list"]);
    assert_eq!(unauthorized.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unauthorized.stderr).contains("set STEWARD_TOKEN"));

    let usage = server.cli(&["users", "create", "x", "--role", "emperor"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("use viewer, operator or administrator"));
}
