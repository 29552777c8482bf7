//! The fields a query can name, their types, and the "did you mean" suggestions for misspelt ones.
//!
//! The schema mirrors the facts document built by [`facts_document`](super::facts_document): every leaf here is a
//! value there, every group an object, and every keyed map an object whose keys are mount points, disk names,
//! interface names or package names.

/// The type of the value a field holds, which decides the operators and literals it can be compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// Text; compared with `=`, `!=`, `~`, `in` and `contains` (substring) against string literals.
    String,
    /// A number; compared with `=`, `!=`, `<`, `<=`, `>`, `>=` and `in` against number literals.
    Number,
    /// `true` or `false`; compared with `=`, `!=` and `in` against `true` and `false`.
    Bool,
    /// A list of strings; tested with `contains` against a string literal.
    StringList,
}

impl FieldType {
    /// The type's name as the documentation and error messages spell it: `string`, `number`, `boolean`, `list of
    /// strings`.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Bool => "boolean",
            FieldType::StringList => "list of strings",
        }
    }

    /// The operators that apply to a field of this type, as listed in error messages.
    pub(crate) fn operators(self) -> &'static str {
        match self {
            FieldType::String => "=, !=, ~, in, contains",
            FieldType::Number => "=, !=, <, <=, >, >=, in",
            FieldType::Bool => "=, !=, in",
            FieldType::StringList => "contains",
        }
    }
}

/// A node of the schema tree.
#[derive(Debug)]
pub(crate) enum Node {
    /// A value a query can compare.
    Leaf(FieldType, &'static str),
    /// An object with fixed field names, reached with `.name`.
    Group(&'static [Field]),
    /// An object keyed by user data, reached with `["key"]`; `key` says what the key is, `entry` is the group of
    /// fields each entry has.
    Map { key: &'static str, entry: &'static Node },
}

/// A named child of a group or map entry.
#[derive(Debug)]
pub(crate) struct Field {
    pub name: &'static str,
    pub node: Node,
}

const fn leaf(name: &'static str, field_type: FieldType, description: &'static str) -> Field {
    Field { name, node: Node::Leaf(field_type, description) }
}

use FieldType::{Bool, Number, String as Str, StringList};

const OS: &[Field] = &[
    leaf("id", Str, "Distribution ID from os-release, for example `debian`, `sles`, `rhel`."),
    leaf("id_like", Str, "Related distributions from os-release (`ID_LIKE`), space separated."),
    leaf("name", Str, "Distribution name (`NAME`), for example `SLES`."),
    leaf("version_id", Str, "Version (`VERSION_ID`), for example `12` or `15.5`."),
    leaf("version", Str, "Version with code name (`VERSION`)."),
    leaf("pretty_name", Str, "Full display name (`PRETTY_NAME`)."),
];

const KERNEL: &[Field] = &[
    leaf("release", Str, "Kernel release as `uname -r` prints it."),
    leaf("version", Str, "Kernel build version as `uname -v` prints it."),
];

const CPU: &[Field] = &[
    leaf("count", Number, "Online logical CPUs."),
    leaf("model", Str, "CPU model name (on s390x, the machine type); empty when unknown."),
];

const MEMORY: &[Field] = &[
    leaf("total_bytes", Number, "Installed memory in bytes."),
    leaf("total_mb", Number, "Installed memory in MiB, rounded down."),
    leaf("swap_total_bytes", Number, "Swap space in bytes."),
    leaf("swap_total_mb", Number, "Swap space in MiB, rounded down."),
];

const FILESYSTEM: &[Field] = &[
    leaf("used_pct", Number, "Used space in percent of the space available to users, as `df` shows it (one decimal)."),
    leaf("size_bytes", Number, "Size in bytes."),
    leaf("used_bytes", Number, "Used space in bytes."),
    leaf("available_bytes", Number, "Space available to unprivileged users, in bytes."),
    leaf("size_gb", Number, "Size in GiB, rounded to one decimal."),
    leaf("type", Str, "Filesystem type, for example `ext4` or `xfs`."),
    leaf("device", Str, "Device or share the filesystem is mounted from."),
];

const DISK: &[Field] = &[
    leaf("size_bytes", Number, "Size in bytes."),
    leaf("size_gb", Number, "Size in GiB, rounded to one decimal."),
    leaf("model", Str, "Model string; empty where the device has none."),
    leaf("rotational", Bool, "Whether the disk is a spinning disk."),
    leaf("read_only", Bool, "Whether the disk is read-only."),
];

const INTERFACE: &[Field] = &[
    leaf("mac", Str, "MAC address in lower-case colon notation; empty for loopback and tunnels."),
    leaf("state", Str, "Operational state: `up`, `down` or `unknown`."),
    leaf("mtu", Number, "MTU in bytes."),
    leaf("addresses", StringList, "Addresses in CIDR notation, for example `192.0.2.10/24`."),
];

const PACKAGE: &[Field] = &[
    leaf("version", Str, "Installed version as the package manager prints it (with epoch for dpkg, `1:9.2p1-2`)."),
    leaf("arch", Str, "Package architecture; the first one in sort order when several are installed."),
    leaf("manager", Str, "Package manager: `dpkg` or `rpm`."),
];

const ZVM: &[Field] = &[
    leaf("userid", Str, "The guest's z/VM user ID."),
    leaf("control_program", Str, "Control program identifier, for example `z/VM    7.3.0`."),
    leaf("lpar_name", Str, "Name of the LPAR the z/VM system runs in."),
    leaf("machine_type", Str, "Machine type, for example `8561`."),
    leaf("cpus_total", Number, "Virtual CPUs of the guest."),
    leaf("cpus_dedicated", Number, "Dedicated virtual CPUs."),
    leaf("cpus_shared", Number, "Shared virtual CPUs."),
    leaf("capability", Number, "CPU capability of the guest."),
];

/// The top-level fields.
pub(crate) const ROOT: &[Field] = &[
    leaf("name", Str, "The system's name in Steward."),
    leaf("state", Str, "Connection state: `online` or `offline`."),
    leaf("hostname", Str, "Host name the system reports."),
    leaf("arch", Str, "Machine architecture as `uname -m` prints it: `x86_64`, `s390x`, `aarch64`."),
    leaf("hypervisor", Str, "Hypervisor: `kvm`, `zvm`, `qemu`, `xen`, `vmware`, `hyperv` or `none`."),
    Field { name: "os", node: Node::Group(OS) },
    Field { name: "kernel", node: Node::Group(KERNEL) },
    Field { name: "cpu", node: Node::Group(CPU) },
    Field { name: "memory", node: Node::Group(MEMORY) },
    Field { name: "fs", node: Node::Map { key: "mount point", entry: &Node::Group(FILESYSTEM) } },
    Field { name: "disk", node: Node::Map { key: "disk name", entry: &Node::Group(DISK) } },
    Field { name: "interface", node: Node::Map { key: "interface name", entry: &Node::Group(INTERFACE) } },
    leaf("addresses", StringList, "Every address of every interface, without prefix length, for example `192.0.2.10`."),
    Field { name: "package", node: Node::Map { key: "package name", entry: &Node::Group(PACKAGE) } },
    leaf("packages", StringList, "Names of all installed packages."),
    Field { name: "zvm", node: Node::Group(ZVM) },
];

/// An example key for each keyed map, used in listings and suggestions.
fn example_key(map_key: &str) -> &'static str {
    match map_key {
        "mount point" => "/",
        "disk name" => "vda",
        "interface name" => "eth0",
        _ => "openssh-server",
    }
}

/// One field a query can compare, as listed by [`fields`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldInfo {
    /// The path as a query writes it; keyed maps show an example key, as in `fs["/"].used_pct`.
    pub path: String,
    /// The type of the field's value.
    pub field_type: FieldType,
    /// One sentence about what the field holds.
    pub description: &'static str,
}

/// Every field a query can compare, in schema order, for documentation, completion and help output.
pub fn fields() -> Vec<FieldInfo> {
    let mut out = Vec::new();
    collect(&Node::Group(ROOT), "", &mut out);
    out
}

fn collect(node: &Node, prefix: &str, out: &mut Vec<FieldInfo>) {
    match node {
        Node::Leaf(field_type, description) => {
            out.push(FieldInfo { path: prefix.to_owned(), field_type: *field_type, description })
        }
        Node::Group(children) => {
            for child in *children {
                let path = if prefix.is_empty() { child.name.to_owned() } else { format!("{prefix}.{}", child.name) };
                collect(&child.node, &path, out);
            }
        }
        Node::Map { key, entry } => {
            let keyed = format!("{prefix}[\"{}\"]", example_key(key));
            collect(entry, &keyed, out);
        }
    }
}

impl Node {
    /// Describes what can follow a path that ends at this node, for error messages.
    pub(crate) fn continuation(&self, path: &str) -> String {
        match self {
            Node::Leaf(field_type, _) => {
                format!("an operator that applies to `{path}`, a {} ({})", field_type.name(), field_type.operators())
            }
            Node::Group(children) => format!(
                "\".\" and a field of `{path}` ({})",
                children.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
            ),
            Node::Map { key, .. } => {
                format!("[\"{key}\"] after `{path}`, for example `{path}[\"{}\"]`", example_key(key))
            }
        }
    }
}

/// Finds the best replacement for the unknown field `name` written after `prefix` (a path, empty at the top level),
/// among `candidates` (the fields that exist there). Falls back to fields anywhere in the schema with the same
/// name, so that `userid` suggests `zvm.userid`.
pub(crate) fn suggest(prefix: &str, name: &str, candidates: &[Field]) -> Option<String> {
    let lowered = name.to_lowercase();
    let limit = match lowered.chars().count() {
        0..=3 => 1,
        4..=6 => 2,
        _ => 3,
    };
    let best = candidates
        .iter()
        .map(|field| (distance(&lowered, field.name), field.name))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d);
    if let Some((_, found)) = best {
        return Some(if prefix.is_empty() { found.to_owned() } else { format!("{prefix}.{found}") });
    }
    fields()
        .into_iter()
        .find(|info| {
            let last = info.path.rsplit('.').next().unwrap_or_default();
            last == lowered && info.path != lowered
        })
        .map(|info| info.path)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours each cost one.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Names longer than this are not typos of any field; skip the quadratic work on hostile input.
    if a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_swaps_as_one_edit() {
        assert_eq!(distance("nmae", "name"), 1);
        assert_eq!(distance("hostnme", "hostname"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn fields_lists_every_leaf_with_example_keys() {
        let paths: Vec<String> = fields().into_iter().map(|f| f.path).collect();
        assert!(paths.contains(&"os.name".to_owned()));
        assert!(paths.contains(&"fs[\"/\"].used_pct".to_owned()));
        assert!(paths.contains(&"interface[\"eth0\"].addresses".to_owned()));
        assert!(paths.contains(&"zvm.cpus_total".to_owned()));
        assert_eq!(paths.len(), 48);
    }

    #[test]
    fn suggestions_prefer_siblings_then_same_name_elsewhere() {
        assert_eq!(suggest("os", "nmae", OS), Some("os.name".to_owned()));
        assert_eq!(suggest("", "userid", ROOT), Some("zvm.userid".to_owned()));
        assert_eq!(suggest("", "HOSTNAME", ROOT), Some("hostname".to_owned()));
        assert_eq!(suggest("", "colour", ROOT), None);
    }
}
