//! `steward systems facts SYSTEM [PATH]`: the facts a system reported, as an indented tree, or the subtree at a
//! dotted path (`os.pretty_name`, `fs./.used_pct`, `interface.eth0.addresses`).
//!
//! Keys may hold dots themselves (mount points, package names), so a path is matched against the keys, not
//! split blindly: at each level the longest key that the rest of the path starts with (followed by a dot or the
//! end) is taken. In a list, a number picks an item.

use serde_json::Value;
use steward_types::api::system_admin::SystemFacts;

use super::Context;
use crate::client::segment;
use crate::output::{Format, json, printable};

pub async fn run(context: &Context, system: &str, path: Option<&str>) -> anyhow::Result<String> {
    let facts: SystemFacts = context.client.get(&format!("/systems/{}/facts", segment(system)), &[]).await?;
    let Some(path) = path.filter(|path| !path.is_empty()) else {
        return Ok(match context.format {
            Format::Json => json(&facts),
            Format::Table => {
                let mut out = format!(
                    "Facts of {} (inventory of {}):\n",
                    facts.system,
                    facts.inventory_updated_at.map_or_else(|| "never".to_string(), |at| at.to_string())
                );
                tree(&facts.facts, 1, &mut out);
                out
            }
        });
    };
    let subtree = lookup(&facts.facts, path).ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no fact {path:?}; run `steward systems facts {system}` for the whole tree",
            facts.system
        )
    })?;
    Ok(match (context.format, subtree) {
        (Format::Json, value) => json(value),
        (Format::Table, Value::Object(_) | Value::Array(_)) => {
            let mut out = String::new();
            tree(subtree, 0, &mut out);
            out
        }
        (Format::Table, scalar) => format!("{}\n", scalar_text(scalar)),
    })
}

/// The value at dotted `path` in `value`.
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(value);
    }
    match value {
        Value::Object(map) => {
            let (key, rest) = map
                .keys()
                .filter_map(|key| match path.strip_prefix(key.as_str()) {
                    Some("") => Some((key, "")),
                    Some(rest) => rest.strip_prefix('.').filter(|rest| !rest.is_empty()).map(|rest| (key, rest)),
                    None => None,
                })
                .max_by_key(|(key, _)| key.len())?;
            lookup(map.get(key)?, rest)
        }
        Value::Array(items) => {
            let (index, rest) = path.split_once('.').unwrap_or((path, ""));
            lookup(items.get(index.parse::<usize>().ok()?)?, rest)
        }
        _ => None,
    }
}

/// `value` as indented `key: value` lines, two spaces per level.
pub fn tree(value: &Value, depth: usize, out: &mut String) {
    let indent = "  ".repeat(depth);
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                write_entry(&indent, &printable(key), child, depth, out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                write_entry(&indent, &index.to_string(), child, depth, out);
            }
        }
        scalar => out.push_str(&format!("{indent}{}\n", scalar_text(scalar))),
    }
}

fn write_entry(indent: &str, key: &str, child: &Value, depth: usize, out: &mut String) {
    match child {
        Value::Object(map) if !map.is_empty() => {
            out.push_str(&format!("{indent}{key}:\n"));
            tree(child, depth + 1, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push_str(&format!("{indent}{key}:\n"));
            tree(child, depth + 1, out);
        }
        Value::Object(_) => out.push_str(&format!("{indent}{key}: {{}}\n")),
        Value::Array(_) => out.push_str(&format!("{indent}{key}: []\n")),
        scalar => out.push_str(&format!("{indent}{key}: {}\n", scalar_text(scalar))),
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => printable(text),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn facts() -> Value {
        json!({
            "name": "web-1",
            "os": {"id": "debian", "pretty_name": "Debian GNU/Linux 13 (trixie)"},
            "filesystems": {"/": {"used_pct": 12.5}, "/var": {"used_pct": 40.0}, "/var/lib": {"used_pct": 3.0}},
            "package": {"libc6": {"version": "2.41"}, "python3.13": {"version": "3.13.5"}},
            "interfaces": {"lo": {"addresses": ["127.0.0.1/8", "::1/128"]}},
            "empty": {},
        })
    }

    #[test]
    fn dotted_paths_find_keys_that_hold_dots() {
        let facts = facts();
        assert_eq!(lookup(&facts, "os.id"), Some(&json!("debian")));
        assert_eq!(lookup(&facts, "filesystems./.used_pct"), Some(&json!(12.5)));
        assert_eq!(lookup(&facts, "filesystems./var/lib.used_pct"), Some(&json!(3.0)));
        assert_eq!(lookup(&facts, "package.python3.13.version"), Some(&json!("3.13.5")));
        assert_eq!(lookup(&facts, "interfaces.lo.addresses.1"), Some(&json!("::1/128")));
        assert_eq!(lookup(&facts, "os"), facts.get("os"));
        for missing in ["os.nope", "osx", "interfaces.lo.addresses.9", "name.first", "os."] {
            assert_eq!(lookup(&facts, missing), None, "{missing}");
        }
    }

    #[test]
    fn the_tree_is_indented_by_level() {
        let mut out = String::new();
        tree(&json!({"name": "web-1", "os": {"id": "debian"}, "list": ["a", {"b": 1}], "empty": {}}), 0, &mut out);
        assert_eq!(out, "empty: {}\nlist:\n  0: a\n  1:\n    b: 1\nname: web-1\nos:\n  id: debian\n");
    }
}
