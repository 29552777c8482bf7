//! Software distribution and system accounts end to end, against a real server and real `steward-agent`
//! processes on loopback. Nothing touches the host's own package database nor its `/etc`: the agents are started
//! with `STEWARD_AGENT_PACKAGE_ROOT` (dpkg acts with `--root` on a scratch root the test made, and the agent's
//! inventory reads that root's dpkg database) and `STEWARD_AGENT_ACCOUNT_ROOT` (shadow-utils act with `-R` on a
//! scratch root holding minimal copies of passwd, group, shadow and gshadow).

#![allow(clippy::unwrap_used)] // Test helpers fail the test on any surprise.

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{Agent, Server, eventually};

const WAIT: Duration = Duration::from_secs(60);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether a tool runs; under `CI=true` (where `scripts/test` installs it) a missing one fails the test.
fn tool_available(program: &str) -> bool {
    let found = Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    assert!(found || std::env::var("CI").as_deref() != Ok("true"), "{program} is missing; CI=true needs it");
    found
}

/// Starts an agent with extra environment and waits until its system is online; returns it, its ID and name.
fn online_agent(server: &Server, dir: &Path, environment: &[(&str, &Path)]) -> (Agent, String, String) {
    let token = server.enrollment_token(1);
    let mut command = Command::new(support::agent_binary());
    for (name, value) in environment {
        command.env(name, value);
    }
    let agent = Agent::start_with(command, &server.api_url, Some(&token), dir);
    let id = eventually("the agent enrolls", WAIT, || agent.system_id());
    let name = eventually("the system is online", WAIT, || {
        let system = server.api().get(&format!("/systems/{id}")).body;
        (system["state"] == "online").then(|| system["name"].as_str().unwrap().to_string())
    });
    (agent, id, name)
}

/// A spec and a tree for `steward packages build`: two files, no scripts (dpkg runs scripts chrooted into the
/// root, and the scratch root has no shell).
fn build_inputs(dir: &Path, version: &str, depends: &str) -> (PathBuf, PathBuf) {
    let files = dir.join("tree");
    std::fs::create_dir_all(files.join("usr/share/steward-hello")).unwrap();
    std::fs::write(files.join("usr/share/steward-hello/greeting.txt"), "hello from steward\n").unwrap();
    std::fs::create_dir_all(files.join("usr/bin")).unwrap();
    std::fs::write(files.join("usr/bin/steward-hello"), "#!/bin/sh\necho hello\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(files.join("usr/bin/steward-hello"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = dir.join(format!("spec-{version}.yaml"));
    std::fs::write(
        &spec,
        format!(
            "name: steward-hello\nversion: \"{version}\"\nrelease: \"1\"\narchitecture: all\nsummary: A greeting\n\
             description: |\n  Says hello.\nmaintainer: Steward Tests <tests@example.org>\nlicense: MIT\n\
             depends: [{depends}]\ntimestamp: 1700000000\n"
        ),
    )
    .unwrap();
    (spec, files)
}

/// A package made by `dpkg-deb --build`.
fn dpkg_deb_package(dir: &Path) -> PathBuf {
    let root = dir.join("probe-root");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/doc/probe")).unwrap();
    std::fs::write(root.join("usr/share/doc/probe/README"), "probe\n").unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: probe\nVersion: 2:1.5-3\nArchitecture: amd64\nMaintainer: Probe <probe@example.org>\n\
         Installed-Size: 12\nDepends: libc6 (>= 2.36), python3 | perl\nDescription: A probe\n Made by dpkg-deb.\n",
    )
    .unwrap();
    let out = dir.join("probe.deb");
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    out
}

#[test]
fn the_repository_reads_uploads_builds_both_formats_and_refuses_duplicates() {
    if !tool_available("dpkg-deb") {
        eprintln!("skipping: dpkg-deb is not installed");
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start();
    let api = server.api();

    // A build through the CLI: the tree goes up as a tar archive with the spec; a .deb and an .rpm come back.
    let (spec, files) = build_inputs(temp.path(), "1.0", "\"coreutils (>= 8)\"");
    let built =
        server.cli_json(&["packages", "build", "--spec", spec.to_str().unwrap(), "--files", files.to_str().unwrap()]);
    assert_eq!(built["deb"]["format"], "deb");
    assert_eq!(built["deb"]["name"], "steward-hello");
    assert_eq!(built["deb"]["version"], "1.0-1");
    assert_eq!(built["deb"]["architecture"], "all");
    assert_eq!(built["deb"]["depends"], json!(["coreutils (>= 8)"]));
    assert_eq!(built["rpm"]["format"], "rpm");
    assert_eq!(built["rpm"]["architecture"], "noarch");
    assert_eq!(built["rpm"]["version"], "1.0-1");
    let deb_id = built["deb"]["id"].as_str().unwrap().to_string();
    let stored = server.data_dir.join(format!("packages/{}.deb", built["deb"]["sha256"].as_str().unwrap()));
    assert!(stored.is_file(), "{} is stored", stored.display());
    // The stored .deb is one dpkg-deb reads.
    let fields = Command::new("dpkg-deb").arg("--field").arg(&stored).args(["Package", "Version"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&fields.stdout), "Package: steward-hello\nVersion: 1.0-1\n");
    // Building again is refused: the repository has both already.
    let again =
        server.cli(&["packages", "build", "--spec", spec.to_str().unwrap(), "--files", files.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has steward-hello 1.0-1"), "{:?}", again);

    // An upload of a package dpkg-deb made: the metadata is read back from its bytes.
    let probe = dpkg_deb_package(temp.path());
    let uploaded = server.cli_json(&["packages", "upload", probe.to_str().unwrap()]);
    assert_eq!(uploaded["name"], "probe");
    assert_eq!(uploaded["version"], "2:1.5-3");
    assert_eq!(uploaded["architecture"], "amd64");
    assert_eq!(uploaded["normalized_architecture"], "x86_64");
    assert_eq!(uploaded["depends"], json!(["libc6 (>= 2.36)", "python3 | perl"]));
    assert_eq!(uploaded["summary"], "A probe");
    assert_eq!(uploaded["installed_size"], 12 * 1024);
    assert_eq!(uploaded["size"], std::fs::metadata(&probe).unwrap().len());

    // The same package again: 409 with the one the repository has.
    let bytes = std::fs::read(&probe).unwrap();
    let duplicate = api.raw("POST", "/packages", Some("application/octet-stream"), Some(bytes));
    assert_eq!(duplicate.status, 409, "{:?}", duplicate.body);
    assert_eq!(duplicate.body["error"]["details"]["reason"], "duplicate_package");
    assert_eq!(duplicate.body["error"]["details"]["package"], uploaded["id"]);
    // Not a package: 422 naming what was found; nothing is left in the repository directory.
    let junk = api.raw("POST", "/packages", Some("application/octet-stream"), Some(b"hello, not a package".to_vec()));
    assert_eq!(junk.status, 422, "{:?}", junk.body);
    assert!(junk.body["error"]["message"].as_str().unwrap().contains("not a Debian or RPM package"), "{:?}", junk.body);
    let names: Vec<String> = std::fs::read_dir(server.data_dir.join("packages"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "three package files and no temporary ones: {names:?}");

    // A build from a directory on the server (administrators), and archives that are not build uploads.
    let on_server = api.post(
        "/packages/build",
        json!({"name": "steward-hello", "version": "2.0", "architecture": "x86_64", "summary": "A greeting",
               "maintainer": "Steward Tests <tests@example.org>", "files_directory": files.to_str().unwrap()}),
    );
    assert_eq!(on_server.status, 201, "{:?}", on_server.body);
    assert_eq!(on_server.body["deb"]["architecture"], "amd64");
    assert_eq!(on_server.body["rpm"]["file_name"], "steward-hello-2.0-1.x86_64.rpm");
    // Reading a directory of the server is for administrators; viewers upload nothing at all.
    assert_eq!(api.post("/users", json!({"name": "otto", "role": "operator"})).status, 201);
    assert_eq!(api.post("/users", json!({"name": "vera", "role": "viewer"})).status, 201);
    let token = |user: &str| {
        api.post("/tokens", json!({"name": "t", "user": user})).body["secret"].as_str().unwrap().to_string()
    };
    let operator = api.with_token(Some(&token("otto")));
    let viewer = api.with_token(Some(&token("vera")));
    let spec_on_server = json!({"name": "x1", "version": "1", "architecture": "all", "summary": "s",
        "maintainer": "m <m@x>", "files_directory": "/etc"});
    assert_eq!(operator.post("/packages/build", spec_on_server).status, 403);
    let viewer_upload =
        viewer.raw("POST", "/packages", Some("application/octet-stream"), Some(std::fs::read(&probe).unwrap()));
    assert_eq!(viewer_upload.status, 403);
    let relative = api.post(
        "/packages/build",
        json!({"name": "x1", "version": "1", "architecture": "all", "summary": "s", "maintainer": "m <m@x>",
               "files_directory": "tree"}),
    );
    assert_eq!(relative.status, 422, "{:?}", relative.body);
    let stray = temp.path().join("stray");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("spec.json"), "{}").unwrap();
    std::fs::write(stray.join("other.txt"), "x").unwrap();
    let archive = temp.path().join("stray.tar");
    assert!(
        Command::new("tar")
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(&stray)
            .args(["spec.json", "other.txt"])
            .status()
            .unwrap()
            .success()
    );
    let refused = api.raw("POST", "/packages/build", Some("application/x-tar"), Some(std::fs::read(&archive).unwrap()));
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    assert!(
        refused.body["error"]["message"].as_str().unwrap().contains("only spec.json and the files/ directory"),
        "{:?}",
        refused.body
    );
    for package in ["deb", "rpm"] {
        api.delete(&format!("/packages/{}", on_server.body[package]["id"].as_str().unwrap()));
    }

    let listed = server.cli_json(&["packages", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(api.get(&format!("/packages/{deb_id}")).body["name"], "steward-hello");

    // Deleting removes the record and the file; the audit trail has the upload and the deletion.
    server.cli_ok(&["packages", "delete", uploaded["id"].as_str().unwrap()]);
    assert_eq!(api.get(&format!("/packages/{}", uploaded["id"].as_str().unwrap())).status, 404);
    assert!(!server.data_dir.join(format!("packages/{}.deb", uploaded["sha256"].as_str().unwrap())).exists());
    let audit = api.get("/audit?limit=100").body;
    let actions: Vec<&str> =
        audit["items"].as_array().unwrap().iter().map(|item| item["action"].as_str().unwrap()).collect();
    for action in ["package.build", "package.upload", "package.delete"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

/// A scratch root with an empty dpkg database.
fn dpkg_root(dir: &Path) -> PathBuf {
    let root = dir.join("dpkg-root");
    let admin = root.join("var/lib/dpkg");
    for sub in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(sub)).unwrap();
    }
    std::fs::write(admin.join("status"), "").unwrap();
    std::fs::write(admin.join("available"), "").unwrap();
    root
}

fn inventory_has(server: &Server, id: &str, package: &str, manager: &str) -> bool {
    let system = server.api().get(&format!("/systems/{id}")).body;
    system["inventory"]["packages"]
        .as_array()
        .is_some_and(|packages| packages.iter().any(|p| p["name"] == package && p["manager"] == manager))
}

#[test]
fn a_built_package_is_installed_and_removed_on_a_scratch_root_now_and_by_a_job() {
    if !is_root() || !tool_available("dpkg") {
        eprintln!("skipping: needs root and dpkg (dpkg --root sets owners)");
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start();
    let api = server.api();
    let root = dpkg_root(temp.path());
    let (_agent, id, name) =
        online_agent(&server, &temp.path().join("agent"), &[("STEWARD_AGENT_PACKAGE_ROOT", root.as_path())]);
    let build = |version: &str, depends: &str| {
        let (spec, files) = build_inputs(temp.path(), version, depends);
        server.cli_json(&["packages", "build", "--spec", spec.to_str().unwrap(), "--files", files.to_str().unwrap()])
    };
    let first = build("1.0", "\"coreutils (>= 8)\"");
    let first_deb = first["deb"]["id"].as_str().unwrap().to_string();
    // The agent's inventory reads the scratch root's database: the package is not there yet.
    assert!(!inventory_has(&server, &id, "steward-hello", "dpkg"));

    // Installed now through the CLI: the scratch root has no coreutils, and dpkg says so, word for word; the CLI
    // prints it and exits with 1.
    let refused = server.cli(&["packages", "install", &first_deb, &name]);
    let printed = String::from_utf8_lossy(&refused.stdout).into_owned();
    assert_eq!(refused.status.code(), Some(1), "{printed}");
    assert!(printed.contains("exit code 1"), "{printed}");
    assert!(
        printed.contains(" steward-hello depends on coreutils (>= 8); however:\n  Package coreutils is not installed."),
        "{printed}"
    );
    assert!(printed.contains("0 succeeded, 1 failed"), "{printed}");

    // Version 1.1 without the dependency upgrades it, through the API: the result is dpkg's own output.
    let built = build("1.1", "");
    let deb = built["deb"]["id"].as_str().unwrap().to_string();
    let result = api
        .post(
            &format!("/packages/{deb}/distribute"),
            json!({"target": {"kind": "system", "system": name}, "action": "upgrade"}),
        )
        .body;
    assert_eq!(result["succeeded"], 1, "{result}");
    let run = &result["targets"][0]["outcome"]["runs"][0];
    let command: Vec<&str> = run["command"].as_array().unwrap().iter().map(|word| word.as_str().unwrap()).collect();
    assert_eq!(&command[..4], ["dpkg", &format!("--root={}", root.display()), "--log=/dev/null", "--install"]);
    assert!(command[4].ends_with("/steward-hello_1.1-1_all.deb"), "{command:?}");
    assert_eq!(run["exit_code"], 0);
    let stdout = run["stdout"].as_str().unwrap();
    assert!(stdout.contains("Preparing to unpack") && stdout.contains("Setting up steward-hello (1.1-1)"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(root.join("usr/share/steward-hello/greeting.txt")).unwrap(),
        "hello from steward\n"
    );
    // The staged file is gone from the agent's staging directory.
    let staging = temp.path().join("agent/packages");
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0, "nothing left in {}", staging.display());
    eventually("the inventory shows the package", WAIT, || {
        inventory_has(&server, &id, "steward-hello", "dpkg").then_some(())
    });

    // Removed by a job one second from now: the run keeps dpkg's exit code and output.
    let at = steward_types::api::Timestamp(steward_types::api::Timestamp::now().millis() + 1000).to_string();
    let scheduled = api.post(
        &format!("/packages/{deb}/distribute"),
        json!({"target": {"kind": "system", "system": name}, "action": "remove", "schedule": {"kind": "once", "at": at}, "job_name": "remove-hello"}),
    );
    assert_eq!(scheduled.status, 201, "{:?}", scheduled.body);
    assert_eq!(scheduled.body["job"]["task"]["kind"], "package");
    let run_id = eventually("the removal job ran", WAIT, || {
        let runs = api.get("/jobs/remove-hello/runs").body;
        runs["items"]
            .as_array()?
            .iter()
            .find(|run| run["state"] != "running")
            .map(|run| run["id"].as_str().unwrap().to_string())
    });
    let run = api.get(&format!("/job-runs/{run_id}")).body;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["results"][0]["exit_code"], 0);
    assert!(run["results"][0]["stdout"].as_str().unwrap().contains("Removing steward-hello (1.1-1)"), "{run}");
    assert!(!root.join("usr/share/steward-hello/greeting.txt").exists());
    eventually("the inventory no longer shows the package", WAIT, || {
        (!inventory_has(&server, &id, "steward-hello", "dpkg")).then_some(())
    });

    // Installing again works.
    let again = api
        .post(
            &format!("/packages/{deb}/distribute"),
            json!({"target": {"kind": "system", "system": name}, "action": "install"}),
        )
        .body;
    assert_eq!(again["succeeded"], 1, "{again}");

    // The .rpm of the same build, with rpm on the same scratch root (rpm is installed on this Debian host, and
    // says what it thinks of that on standard error, which is kept as it is).
    let rpm = built["rpm"]["id"].as_str().unwrap();
    let target = json!({"kind": "system", "system": name});
    let installed =
        api.post(&format!("/packages/{rpm}/distribute"), json!({"target": target, "action": "install"})).body;
    assert_eq!(installed["succeeded"], 1, "{installed}");
    let run = &installed["targets"][0]["outcome"]["runs"][0];
    assert_eq!(
        run["command"].as_array().unwrap()[..4],
        json!(["rpm", "--root", root.to_str().unwrap(), "-ivh"]).as_array().unwrap()[..],
        "{run}"
    );
    assert!(run["stdout"].as_str().unwrap().contains("steward-hello-1.1-1"), "{run}");
    eventually("the inventory shows the rpm package", WAIT, || {
        inventory_has(&server, &id, "steward-hello", "rpm").then_some(())
    });
    let removed = api.post(&format!("/packages/{rpm}/distribute"), json!({"target": target, "action": "remove"})).body;
    assert_eq!(removed["succeeded"], 1, "{removed}");
    assert_eq!(removed["targets"][0]["outcome"]["runs"][0]["command"][3], "-e");
    eventually("the inventory no longer shows the rpm package", WAIT, || {
        (!inventory_has(&server, &id, "steward-hello", "rpm")).then_some(())
    });
    // Removing it again: rpm's refusal, word for word, and the target counts as failed.
    let again = api.post(&format!("/packages/{rpm}/distribute"), json!({"target": target, "action": "remove"})).body;
    assert_eq!(again["failed"], 1, "{again}");
    let run = &again["targets"][0]["outcome"]["runs"][0];
    assert_eq!(run["exit_code"], 1);
    assert!(run["stderr"].as_str().unwrap().contains("error: package steward-hello is not installed"), "{run}");

    // On a group with an offline member: the online one has dpkg's result, the offline one the reason.
    let other_root = dpkg_root(&temp.path().join("other"));
    let (mut other, other_id, other_name) =
        online_agent(&server, &temp.path().join("agent-2"), &[("STEWARD_AGENT_PACKAGE_ROOT", other_root.as_path())]);
    other.child.kill().unwrap();
    let _ = other.child.wait();
    eventually("the second system is offline", WAIT, || {
        (api.get(&format!("/systems/{other_id}")).body["state"] == "offline").then_some(())
    });
    assert_eq!(api.post("/groups", json!({"name": "fleet"})).status, 201);
    assert_eq!(api.post("/groups/fleet/members", json!({"systems": [name, other_name]})).status, 200);
    let removal = server.cli(&["--output", "json", "packages", "remove", &deb, "--group", "fleet"]);
    assert_eq!(removal.status.code(), Some(1), "one member failed");
    let removal: serde_json::Value = serde_json::from_slice(&removal.stdout).unwrap();
    assert_eq!((removal["succeeded"].as_u64(), removal["failed"].as_u64()), (Some(1), Some(1)), "{removal}");
    let targets = removal["targets"].as_array().unwrap();
    let online = targets.iter().find(|target| target["system"] == name.as_str()).unwrap();
    assert_eq!(online["outcome"]["runs"][0]["command"][3], "--remove");
    assert!(online["outcome"]["runs"][0]["stdout"].as_str().unwrap().contains("Removing steward-hello (1.1-1)"));
    let offline = targets.iter().find(|target| target["system"] == other_name.as_str()).unwrap();
    assert!(offline["outcome"].is_null());
    assert!(offline["error"]["message"].as_str().unwrap().contains("offline"), "{offline}");
    let audit = api.get("/audit?limit=100").body;
    let record = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["action"] == "package.distribute" && item["target"] == "group fleet")
        .unwrap()
        .clone();
    assert_eq!(record["details"]["result"]["failed"], 1, "{record}");
}

/// A scratch root for shadow-utils: minimal copies of the account files.
fn account_root(dir: &Path) -> PathBuf {
    let root = dir.join("account-root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("home")).unwrap();
    let etc = root.join("etc");
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\nusers:x:100:100::/:/usr/sbin/nologin\n")
        .unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\nusers:x:100:\nstaff:x:50:\n").unwrap();
    std::fs::write(etc.join("shadow"), "root:*:19000:0:99999:7:::\nusers:*:19000:0:99999:7:::\n").unwrap();
    std::fs::write(etc.join("gshadow"), "root:*::\nusers:*::\nstaff:*::\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    for file in ["shadow", "gshadow"] {
        std::fs::set_permissions(etc.join(file), std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    root
}

fn shadow_line(root: &Path, user: &str) -> Option<String> {
    std::fs::read_to_string(root.join("etc/shadow"))
        .unwrap()
        .lines()
        .find(|line| line.starts_with(&format!("{user}:")))
        .map(str::to_string)
}

#[test]
fn accounts_are_changed_in_a_scratch_root_and_the_password_is_never_recorded() {
    if !is_root() || !tool_available("useradd") {
        eprintln!("skipping: needs root and shadow-utils (useradd -R chroots)");
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start();
    let api = server.api();
    let root = account_root(temp.path());
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let (agent, _id, name) =
        online_agent(&server, &temp.path().join("agent"), &[("STEWARD_AGENT_ACCOUNT_ROOT", root.as_path())]);
    let password = format!("Pw-{}-secret", std::process::id());
    let path = format!("/systems/{name}/accounts");

    // Create with a password and a home directory.
    let created = api.post(
        &path,
        json!({"change": "create_user", "name": "alice", "uid": 2001, "primary_group": "users", "comment": "Alice",
               "home": "/home/alice", "create_home": true, "shell": "/bin/sh", "password": password}),
    );
    assert_eq!(created.status, 200, "{:?}", created.body);
    let runs = created.body["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["command"][0], "useradd");
    assert_eq!(runs[1]["command"], json!(["chpasswd", "-R", root.to_str().unwrap(), "-c", "SHA512"]));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("alice:x:2001:100:Alice:/home/alice:/bin/sh"), "{passwd}");
    assert!(root.join("home/alice").is_dir());
    let shadow = shadow_line(&root, "alice").unwrap();
    assert!(shadow.starts_with("alice:$6$"), "a SHA-512 hash: {shadow}");
    assert!(!shadow.contains(&password));

    // Lock: the hash gets its `!`; the listing says so and never shows a hash.
    server.cli_ok(&["accounts", "lock", "--system", &name, "alice"]);
    assert!(shadow_line(&root, "alice").unwrap().starts_with("alice:!$6$"));
    let listing = server.cli_json(&["accounts", "list", &name]);
    let alice = listing["users"].as_array().unwrap().iter().find(|user| user["name"] == "alice").unwrap().clone();
    assert_eq!(alice["locked"], true);
    assert_eq!(alice["password"], "locked");
    assert_eq!(alice["primary_group"], "users");
    assert!(!listing.to_string().contains("$6$"));

    // Expiry as chage sets it.
    let expired = api.post(
        &path,
        json!({"change": "expiry", "name": "alice", "account_expires": "2030-01-01", "max_days": 90, "warn_days": 5}),
    );
    assert_eq!(expired.status, 200, "{:?}", expired.body);
    let fields: Vec<String> = shadow_line(&root, "alice").unwrap().split(':').map(str::to_string).collect();
    assert_eq!((fields[4].as_str(), fields[5].as_str(), fields[7].as_str()), ("90", "5", "21915"));
    let listed = api.get(&path).body;
    let alice = listed["users"].as_array().unwrap().iter().find(|user| user["name"] == "alice").unwrap().clone();
    assert_eq!(alice["account_expires"], "2030-01-01");
    assert_eq!(alice["max_days"], 90);

    // Group membership: created, added, removed.
    assert_eq!(api.post(&path, json!({"change": "create_group", "name": "devs", "gid": 3000})).status, 200);
    assert_eq!(
        api.post(&path, json!({"change": "add_to_groups", "name": "alice", "groups": ["devs", "staff"]})).status,
        200
    );
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(group.contains("devs:x:3000:alice") && group.contains("staff:x:50:alice"), "{group}");
    let removed = api.post(&path, json!({"change": "remove_from_group", "name": "alice", "group": "staff"}));
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    assert_eq!(removed.body["runs"][0]["stdout"], "Removing user alice from group staff\n");
    assert!(std::fs::read_to_string(root.join("etc/group")).unwrap().contains("staff:x:50:\n"));

    // A new password through the CLI, read from standard input; unlocked again.
    let second = format!("{password}-2");
    let mut child = Command::new(support::steward_binary())
        .args(["accounts", "set-password", "--system", &name, "alice"])
        .env("STEWARD_SERVER", &server.api_url)
        .env("STEWARD_TOKEN", &server.token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{second}\n").as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(api.post(&path, json!({"change": "unlock", "name": "alice"})).status, 200);
    assert!(shadow_line(&root, "alice").unwrap().starts_with("alice:$6$"));

    // A change the tool refuses: 409 with usermod's own words and exit code.
    let missing = api.post(&path, json!({"change": "lock", "name": "nobody-here"}));
    assert_eq!(missing.status, 409, "{:?}", missing.body);
    assert_eq!(missing.body["error"]["details"]["reason"], "account_change_failed");
    assert_eq!(missing.body["error"]["details"]["exit_code"], 6);
    assert!(missing.body["error"]["message"].as_str().unwrap().contains("usermod: user 'nobody-here' does not exist"));
    // Bad input names the field.
    let bad = api.post(&path, json!({"change": "create_user", "name": "bad:name"}));
    assert_eq!(bad.status, 422, "{:?}", bad.body);
    assert!(bad.body["error"]["message"].as_str().unwrap().contains("name"), "{:?}", bad.body);

    // On a group: every member (here one) gets the change.
    assert_eq!(api.post("/groups", json!({"name": "fleet"})).status, 201);
    assert_eq!(api.post("/groups/fleet/members", json!({"systems": [name]})).status, 200);
    let on_group =
        api.post("/groups/fleet/accounts", json!({"change": "delete_user", "name": "alice", "remove_home": true}));
    assert_eq!(on_group.status, 200, "{:?}", on_group.body);
    assert_eq!(on_group.body["succeeded"], 1, "{:?}", on_group.body);
    assert!(!std::fs::read_to_string(root.join("etc/passwd")).unwrap().contains("alice"));
    assert!(!root.join("home/alice").exists());

    // The host's own accounts were never touched; the passwords are in neither the audit trail nor the log.
    assert_eq!(std::fs::read_to_string("/etc/passwd").unwrap(), host_passwd);
    let audit = api.get("/audit?limit=200").body.to_string();
    assert!(audit.contains("system.account_change") && audit.contains("password_set"), "{audit}");
    for secret in [&password, &second] {
        assert!(!audit.contains(secret.as_str()), "the audit trail has a password");
        assert!(!server.log().contains(secret.as_str()), "the server log has a password");
        assert!(!agent.log().contains(secret.as_str()), "the agent log has a password");
    }
}
