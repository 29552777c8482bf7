//! File transfer end to end: `steward files push|pull` and the HTTP API against a real server and real agents on
//! loopback. Every file the tests write is under a temporary directory they own; the agents are limited to it
//! with `--file-read-root`/`--file-write-root`.

#![allow(clippy::unwrap_used)] // Test helpers fail the test on any surprise.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{Agent, Server, agent_binary, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// Starts an agent limited to `root` for file transfers; returns it with its system's ID and name.
fn agent_in(server: &Server, state_dir: &Path, root: &Path) -> (Agent, String, String) {
    let token = server.enrollment_token(1);
    let mut command = Command::new(agent_binary());
    command.arg("--file-read-root").arg(root).arg("--file-write-root").arg(root);
    let agent = Agent::start_with(command, &server.api_url, Some(&token), state_dir);
    let id = eventually("the agent enrolls", WAIT, || agent.system_id());
    let name = eventually("the system is online", WAIT, || {
        let system = server.api().get(&format!("/systems/{id}")).body;
        (system["state"] == "online").then(|| system["name"].as_str().unwrap().to_string())
    });
    (agent, id, name)
}

fn sha256_of(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Files whose name marks them as a transfer's temporary files, anywhere under `root`.
fn temporary_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else { return found };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().contains(".steward-") {
            found.push(path.clone());
        }
        if path.is_dir() && !path.is_symlink() {
            found.extend(temporary_files(&path));
        }
    }
    found
}

fn pseudo_random(bytes: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn files_and_trees_round_trip_with_checksums_modes_owners_and_links() {
    let temp = tempfile::tempdir().unwrap();
    let remote = temp.path().join("remote");
    std::fs::create_dir(&remote).unwrap();
    let server = Server::start();
    let (_agent, id, name) = agent_in(&server, &temp.path().join("agent"), &remote);

    // A file of a few MiB, not a multiple of the chunk size.
    let local = temp.path().join("data.bin");
    std::fs::write(&local, pseudo_random(5 * 1024 * 1024 + 12_345)).unwrap();
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o640)).unwrap();
    let target = remote.join("data.bin");
    let pushed = server.cli_json(&["files", "push", &name, local.to_str().unwrap(), target.to_str().unwrap()]);
    let expected = sha256_of(&local);
    assert_eq!(pushed["sha256"], expected.as_str(), "{pushed}");
    assert_eq!(pushed["bytes"], 5 * 1024 * 1024 + 12_345);
    assert_eq!(sha256_of(&target), expected);
    let written = std::fs::metadata(&target).unwrap();
    assert_eq!(written.mode() & 0o7777, 0o640, "the local mode is kept");
    assert_eq!(written.mtime(), std::fs::metadata(&local).unwrap().mtime(), "the modification time is kept");

    // Again with an explicit mode and owner (numbers and a name this system has).
    let pushed = server.cli(&[
        "files",
        "push",
        &name,
        local.to_str().unwrap(),
        target.to_str().unwrap(),
        "--mode",
        "0604",
        "--owner",
        "4242:daemon",
    ]);
    assert!(pushed.status.success(), "{}", stderr_of(&pushed));
    let written = std::fs::metadata(&target).unwrap();
    assert_eq!(written.mode() & 0o7777, 0o604);
    assert_eq!(written.uid(), 4242);
    assert_eq!(written.gid(), 1, "daemon is group 1 on Debian");

    // Pulled back into a directory: same bytes, same metadata.
    let back = temp.path().join("back");
    std::fs::create_dir(&back).unwrap();
    let pulled = server.cli_json(&["files", "pull", &id, target.to_str().unwrap(), back.to_str().unwrap()]);
    assert_eq!(pulled["sha256"], expected.as_str(), "{pulled}");
    let copy = back.join("data.bin");
    assert_eq!(sha256_of(&copy), expected);
    assert_eq!(std::fs::metadata(&copy).unwrap().mode() & 0o7777, 0o604);
    assert_eq!(std::fs::metadata(&copy).unwrap().uid(), 4242, "a root CLI keeps the owner");

    // A directory tree with modes and a symbolic link, both ways.
    let tree = temp.path().join("tree");
    std::fs::create_dir_all(tree.join("etc/app.d")).unwrap();
    std::fs::write(tree.join("etc/app.conf"), "key = value\n").unwrap();
    std::fs::write(tree.join("etc/app.d/secret"), "hunter2\n").unwrap();
    std::fs::set_permissions(tree.join("etc/app.d/secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(tree.join("etc/app.d"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::write(tree.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(tree.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("etc/app.conf", tree.join("current")).unwrap();
    let remote_tree = remote.join("tree");
    let output = server.cli(&["files", "push", "-r", &name, tree.to_str().unwrap(), remote_tree.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("6 entries"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let mode = |path: &Path| std::fs::symlink_metadata(path).unwrap().mode() & 0o7777;
    for relative in ["etc/app.conf", "etc/app.d/secret", "etc/app.d", "run.sh", "etc"] {
        assert_eq!(mode(&remote_tree.join(relative)), mode(&tree.join(relative)), "{relative}");
    }
    assert_eq!(std::fs::read_link(remote_tree.join("current")).unwrap(), Path::new("etc/app.conf"));
    assert_eq!(std::fs::read_to_string(remote_tree.join("etc/app.d/secret")).unwrap(), "hunter2\n");

    let pulled_tree = temp.path().join("pulled-tree");
    let output =
        server.cli(&["files", "pull", "-r", &name, remote_tree.to_str().unwrap(), pulled_tree.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    for relative in ["etc/app.conf", "etc/app.d/secret", "etc/app.d", "run.sh"] {
        assert_eq!(mode(&pulled_tree.join(relative)), mode(&tree.join(relative)), "{relative}");
    }
    assert_eq!(std::fs::read_link(pulled_tree.join("current")).unwrap(), Path::new("etc/app.conf"));
    assert_eq!(std::fs::read_to_string(pulled_tree.join("run.sh")).unwrap(), "#!/bin/sh\necho hi\n");

    // A directory is refused without -r, naming what to do.
    let refused = server.cli(&["files", "pull", &name, remote_tree.to_str().unwrap(), pulled_tree.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(stderr_of(&refused).contains("is a directory; pull it with -r"), "{}", stderr_of(&refused));
    assert!(temporary_files(temp.path()).is_empty(), "{:?}", temporary_files(temp.path()));

    // Every transfer is in the audit trail with its path, size and checksum.
    let audit = server.api().get("/audit?limit=100").body;
    let records = audit["items"].as_array().unwrap();
    let push = records
        .iter()
        .find(|record| record["action"] == "system.file_push" && record["details"]["sha256"] == expected.as_str())
        .unwrap_or_else(|| panic!("no push record: {audit}"));
    assert_eq!(push["outcome"], "success");
    assert_eq!(push["details"]["path"], target.to_str().unwrap());
    assert_eq!(push["details"]["bytes"], 5 * 1024 * 1024 + 12_345);
    assert!(
        records.iter().any(|record| record["action"] == "system.file_pull"
            && record["details"]["sha256"] == expected.as_str()
            && record["outcome"] == "success"),
        "{audit}"
    );
}

#[test]
fn paths_outside_the_allowed_roots_and_dotdot_are_refused_by_name() {
    let temp = tempfile::tempdir().unwrap();
    let allowed = temp.path().join("allowed");
    let outside = temp.path().join("outside");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "not for you\n").unwrap();
    std::os::unix::fs::symlink(&outside, allowed.join("escape")).unwrap();
    let server = Server::start();
    let (_agent, _id, name) = agent_in(&server, &temp.path().join("agent"), &allowed);
    let local = temp.path().join("small.txt");
    std::fs::write(&local, "hello\n").unwrap();

    let target = outside.join("planted");
    let refused = server.cli(&["files", "push", &name, local.to_str().unwrap(), target.to_str().unwrap()]);
    assert!(!refused.status.success());
    let message = stderr_of(&refused);
    assert!(message.contains(target.to_str().unwrap()) && message.contains("outside the directories"), "{message}");
    assert!(!target.exists());

    // Through a link inside the allowed root: resolved, then refused.
    let through_link = allowed.join("escape/planted");
    let refused = server.cli(&["files", "push", &name, local.to_str().unwrap(), through_link.to_str().unwrap()]);
    let message = stderr_of(&refused);
    assert!(!refused.status.success() && message.contains("resolved to"), "{message}");
    assert!(!outside.join("planted").exists());
    let refused = server.cli(&["files", "pull", &name, allowed.join("escape/secret").to_str().unwrap(), "-"]);
    let message = stderr_of(&refused);
    assert!(!refused.status.success() && message.contains("outside the directories this agent may read"), "{message}");

    // `..` is refused by the API before the agent is asked, and a relative path too.
    let dotdot = format!("{}/../outside/planted", allowed.display());
    let api = server.api();
    let answer = api.raw(
        "PUT",
        &format!("/systems/{name}/files?path={}", dotdot.replace('/', "%2F")),
        Some("application/octet-stream"),
        Some(b"x".to_vec()),
    );
    assert_eq!(answer.status, 422, "{:?}", answer.body);
    assert!(answer.error_message().contains("`..`"), "{:?}", answer.body);
    let answer = api.raw("PUT", &format!("/systems/{name}/files?path=relative"), None, Some(b"x".to_vec()));
    assert_eq!(answer.status, 422, "{:?}", answer.body);
    assert!(!outside.join("planted").exists());

    // Kernel pseudo-filesystems are never read, whatever the roots.
    let audit = api.get("/audit?limit=50").body;
    let failures = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["action"] == "system.file_push" && record["outcome"] == "failure")
        .count();
    assert!(failures >= 3, "refused pushes are audited: {audit}");
}

/// A small tmpfs mounted for the test, unmounted when dropped.
struct SmallFilesystem(PathBuf);

impl SmallFilesystem {
    fn mount(path: &Path, size: &str) -> SmallFilesystem {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "steward-test"])
            .arg(path)
            .status();
        assert!(status.is_ok_and(|status| status.success()), "mounting a tmpfs needs root");
        SmallFilesystem(path.to_path_buf())
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_reported_and_leaves_no_file_behind() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("root");
    let small = SmallFilesystem::mount(&root.join("small"), "1m");
    let server = Server::start();
    let (_agent, _id, name) = agent_in(&server, &temp.path().join("agent"), &root);

    let local = temp.path().join("big.bin");
    std::fs::write(&local, pseudo_random(3 * 1024 * 1024)).unwrap();
    let target = small.0.join("big.bin");
    let refused = server.cli(&["files", "push", &name, local.to_str().unwrap(), target.to_str().unwrap()]);
    let message = stderr_of(&refused);
    assert!(!refused.status.success(), "a 3 MiB file does not fit in 1 MiB");
    assert!(message.contains("No space left on device") && message.contains(target.to_str().unwrap()), "{message}");
    let left: Vec<_> = std::fs::read_dir(&small.0).unwrap().map(|entry| entry.unwrap().path()).collect();
    assert!(left.is_empty(), "neither the file nor a temporary file is left: {left:?}");

    // A tree that does not fit: nothing of it stays, not even the directories it created.
    let tree = temp.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/a.bin"), pseudo_random(700 * 1024)).unwrap();
    std::fs::write(tree.join("sub/b.bin"), pseudo_random(700 * 1024)).unwrap();
    let remote_tree = small.0.join("tree");
    let refused = server.cli(&["files", "push", "-r", &name, tree.to_str().unwrap(), remote_tree.to_str().unwrap()]);
    let message = stderr_of(&refused);
    assert!(!refused.status.success() && message.contains("No space left on device"), "{message}");
    let left: Vec<_> = std::fs::read_dir(&small.0).unwrap().map(|entry| entry.unwrap().path()).collect();
    assert!(left.is_empty(), "{left:?}");

    // The disk still takes what fits.
    let fits = temp.path().join("fits.txt");
    std::fs::write(&fits, "fits\n").unwrap();
    let output =
        server.cli(&["files", "push", &name, fits.to_str().unwrap(), small.0.join("fits.txt").to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(std::fs::read_to_string(small.0.join("fits.txt")).unwrap(), "fits\n");
}

#[test]
fn a_group_push_reports_every_member_and_fails_for_an_offline_one() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("root");
    std::fs::create_dir_all(root.join("one")).unwrap();
    std::fs::create_dir_all(root.join("two")).unwrap();
    let server = Server::start();
    let (_online, _, online) = agent_in(&server, &temp.path().join("agent-1"), &root);
    let (mut offline_agent, offline_id, offline) = agent_in(&server, &temp.path().join("agent-2"), &root);
    server.cli_ok(&["groups", "create", "fleet"]);
    server.cli_ok(&["groups", "add", "fleet", &online, &offline]);
    offline_agent.child.kill().unwrap();
    offline_agent.child.wait().unwrap();
    eventually("the stopped agent's system is offline", WAIT, || {
        (server.api().get(&format!("/systems/{offline_id}")).body["state"] == "offline").then_some(())
    });

    let local = temp.path().join("motd");
    std::fs::write(&local, "welcome\n").unwrap();
    let target = root.join("one/motd");
    let output = server.cli(&[
        "--output",
        "json",
        "files",
        "push",
        "--group",
        "fleet",
        local.to_str().unwrap(),
        target.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "a failed member makes the exit code non-zero: {}", stderr_of(&output));
    let outcome: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(outcome["succeeded"], 1, "{outcome}");
    assert_eq!(outcome["failed"], 1, "{outcome}");
    let results = outcome["results"].as_array().unwrap();
    let ok = results.iter().find(|result| result["system"] == online.as_str()).unwrap();
    assert_eq!(ok["ok"], true);
    assert_eq!(ok["sha256"], sha256_of(&local).as_str());
    let failed = results.iter().find(|result| result["system"] == offline.as_str()).unwrap();
    assert_eq!(failed["ok"], false);
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(&offline) && message.contains("offline"), "{message}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "welcome\n");
}

/// The peak resident memory of a process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The longest test here (about 30 seconds with a debug build on 2 cores: the gigabyte is hashed several times
/// each way); it proves streaming by memory, not by time.
#[test]
fn a_gigabyte_streams_both_ways_in_flat_memory() {
    const GIB: u64 = 1024 * 1024 * 1024;
    const BOUND_KIB: u64 = 64 * 1024;
    let temp = tempfile::tempdir().unwrap();
    let remote = temp.path().join("remote");
    std::fs::create_dir(&remote).unwrap();
    let server = Server::start();
    let (agent, id, _name) = agent_in(&server, &temp.path().join("agent"), &remote);
    let local = temp.path().join("gigabyte.img");
    // Sparse, but read in full like any file.
    let status = Command::new("truncate").args(["-s", "1G"]).arg(&local).status().unwrap();
    assert!(status.success());
    std::fs::write(remote.join("warm-up"), "x").unwrap();
    server.cli_ok(&[
        "files",
        "pull",
        &id,
        remote.join("warm-up").to_str().unwrap(),
        temp.path().join("warm").to_str().unwrap(),
    ]);
    let (server_before, agent_before) = (peak_rss_kib(server.child.id()), peak_rss_kib(agent.child.id()));

    let target = remote.join("gigabyte.img");
    let pushed = server.cli_json(&["files", "push", &id, local.to_str().unwrap(), target.to_str().unwrap()]);
    assert_eq!(pushed["bytes"], GIB);
    let expected = pushed["sha256"].as_str().unwrap().to_string();
    assert_eq!(std::fs::metadata(&target).unwrap().len(), GIB);
    std::fs::remove_file(&local).unwrap();
    let back = temp.path().join("back.img");
    let pulled = server.cli_json(&["files", "pull", &id, target.to_str().unwrap(), back.to_str().unwrap()]);
    assert_eq!(pulled["sha256"], expected.as_str());
    assert_eq!(sha256_of(&back), expected);

    let (server_after, agent_after) = (peak_rss_kib(server.child.id()), peak_rss_kib(agent.child.id()));
    assert!(
        server_after - server_before < BOUND_KIB,
        "the server's peak memory grew by {} KiB moving 1 GiB each way",
        server_after - server_before
    );
    assert!(
        agent_after - agent_before < BOUND_KIB,
        "the agent's peak memory grew by {} KiB moving 1 GiB each way",
        agent_after - agent_before
    );
    eprintln!(
        "peak memory growth over 1 GiB each way: server {} KiB, agent {} KiB",
        server_after - server_before,
        agent_after - agent_before
    );
}
