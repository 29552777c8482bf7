//! Property tests of the query language: the parser never panics and reports positions inside the query, the
//! canonical form parses back to the same tree, and `not` is exact negation on any facts document.

use proptest::prelude::*;
use serde_json::Value;
use steward_protocol::inventory::{
    BlockDevice, Cpu, Filesystem, HostFacts, Inventory, Kernel, Memory, NetworkInterface, OsRelease, Package,
    PackageManager, ZvmGuest,
};
use steward_types::query::{
    CompareOp, Expr, FieldType, Literal, Path, Query, Segment, SystemFacts, facts_document, fields,
};

/// Pieces of queries, valid and invalid, to build strings that get past the lexer more often than random text.
const TOKENS: &[&str] = &[
    "os",
    ".",
    "id",
    "name",
    "cpu",
    "count",
    "fs",
    "[",
    "]",
    "\"/\"",
    "(",
    ")",
    "and",
    "or",
    "not",
    "exists",
    "in",
    "contains",
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "~",
    ",",
    "\"x\"",
    "2",
    "-1.5",
    "true",
    "false",
    "zvm",
    "userid",
    "addresses",
    "package",
    "\"bash\"",
    "version",
    " ",
    "\"",
    "\\",
    "\n",
    "é",
    "!",
    "==",
    "1.",
    "\"\\u{",
    "AND",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|tokens| tokens.join(" "))
}

fn check_error_position(source: &str) {
    if let Err(error) = Query::parse(source) {
        let length = source.chars().count();
        assert!((1..=length + 1).contains(&error.position), "{error} for {source:?} of {length} characters");
        // Rendering must not panic either, and must end with the message.
        assert!(error.render(source).ends_with(&error.to_string()));
    }
}

/// A leaf field of the schema with a random key for each keyed map on its path.
fn leaf() -> impl Strategy<Value = (Path, FieldType)> {
    let leaves: Vec<(Path, FieldType)> = fields()
        .into_iter()
        .map(|field| {
            let query = Query::parse(&format!("exists {}", field.path)).expect("schema paths parse");
            let Expr::Exists(path) = query.expr().clone() else { unreachable!("exists parses to Exists") };
            (path, field.field_type)
        })
        .collect();
    (prop::sample::select(leaves), key()).prop_map(|((Path(segments), field_type), key)| {
        let segments = segments
            .into_iter()
            .map(|segment| match segment {
                Segment::Key(_) => Segment::Key(key.clone()),
                field => field,
            })
            .collect();
        (Path(segments), field_type)
    })
}

/// A map key: usually one the sample facts have, sometimes arbitrary text.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["/", "/var", "vda", "eth0", "openssh-server", "bash"]).prop_map(String::from),
        1 => any::<String>(),
    ]
}

/// A string literal: usually a value the random facts use, sometimes arbitrary text or a glob.
fn string_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["debian", "sles", "kvm", "zvm", "up", "x86_64", "10.0.0.5", "bash", "", "LINUX01"])
            .prop_map(String::from),
        1 => prop::sample::select(vec!["*", "deb*", "?les", "*5", "LINUX*"]).prop_map(String::from),
        1 => any::<String>(),
    ]
}

fn number_literal() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => (-2i64..100).prop_map(|n| n as f64),
        1 => any::<i64>().prop_map(|n| n as f64),
        1 => -1e9f64..1e9f64,
    ]
}

fn literal(field_type: FieldType) -> BoxedStrategy<Literal> {
    match field_type {
        FieldType::String | FieldType::StringList => string_literal().prop_map(Literal::String).boxed(),
        FieldType::Number => number_literal().prop_map(Literal::Number).boxed(),
        FieldType::Bool => any::<bool>().prop_map(Literal::Bool).boxed(),
    }
}

fn operator(field_type: FieldType) -> BoxedStrategy<Option<CompareOp>> {
    use CompareOp::*;
    let ops: Vec<Option<CompareOp>> = match field_type {
        FieldType::String => vec![Some(Eq), Some(Ne), Some(Glob), Some(Contains), None],
        FieldType::Number => vec![Some(Eq), Some(Ne), Some(Lt), Some(Le), Some(Gt), Some(Ge), None],
        FieldType::Bool => vec![Some(Eq), Some(Ne), None],
        FieldType::StringList => vec![Some(Contains)],
    };
    prop::sample::select(ops).boxed()
}

/// A well-typed condition on one field, or `exists`.
fn atom() -> impl Strategy<Value = Expr> {
    let comparison = leaf().prop_flat_map(|(path, field_type)| {
        (operator(field_type), prop::collection::vec(literal(field_type), 0..4), literal(field_type)).prop_map(
            move |(op, values, value)| match op {
                Some(op) => Expr::Compare { path: path.clone(), op, value },
                None => Expr::In { path: path.clone(), values },
            },
        )
    });
    let exists = leaf().prop_map(|(Path(mut segments), _)| {
        let keep = segments.len().div_ceil(2);
        segments.truncate(keep);
        Expr::Exists(Path(segments))
    });
    prop_oneof![4 => comparison, 1 => exists]
}

/// Joins conditions with `and` or `or` the way the parser does: nested lists of the same kind are flattened.
fn join(items: Vec<Expr>, or: bool) -> Expr {
    let mut flat = Vec::new();
    for item in items {
        match (item, or) {
            (Expr::Or(inner), true) | (Expr::And(inner), false) => flat.extend(inner),
            (other, _) => flat.push(other),
        }
    }
    if or { Expr::Or(flat) } else { Expr::And(flat) }
}

/// A random well-typed query tree in the parser's normal form.
fn expr() -> impl Strategy<Value = Expr> {
    atom().prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            (prop::collection::vec(inner.clone(), 2..4), any::<bool>()).prop_map(|(items, or)| join(items, or)),
        ]
    })
}

/// A random system: sometimes without inventory, sometimes with z/VM facts, with values drawn from small sets so
/// that generated queries match some of the time.
fn facts() -> impl Strategy<Value = Value> {
    let os = prop::sample::select(vec!["debian", "sles", "rhel"]);
    let inventory = (
        os,
        prop::sample::select(vec!["kvm", "zvm", "none"]),
        0u32..9,
        0u64..100,
        prop::option::of(prop::sample::select(vec!["LINUX01", "LINUX02"])),
        prop::collection::vec(prop::sample::select(vec!["bash", "openssh-server", "nginx"]), 0..3),
        any::<bool>(),
    )
        .prop_map(|(os, hypervisor, cpus, used, userid, packages, up)| Inventory {
            host: HostFacts {
                hostname: format!("{os}.example.com"),
                os: OsRelease { id: os.into(), name: os.to_uppercase(), ..OsRelease::default() },
                kernel: Kernel { release: "6.1.0".into(), version: "#1".into() },
                arch: "x86_64".into(),
                cpu: Cpu { count: cpus, model: String::new() },
                memory: Memory { total_bytes: u64::from(cpus) << 30, swap_total_bytes: 0 },
                hypervisor: hypervisor.into(),
            },
            block_devices: vec![BlockDevice { name: "vda".into(), size_bytes: 10 << 30, ..BlockDevice::default() }],
            filesystems: vec![Filesystem {
                mount_point: "/".into(),
                size_bytes: 100,
                used_bytes: used,
                available_bytes: 100 - used,
                ..Filesystem::default()
            }],
            interfaces: vec![NetworkInterface {
                name: "eth0".into(),
                state: if up { "up" } else { "down" }.into(),
                mtu: 1500,
                addresses: vec!["10.0.0.5/24".into()],
                ..NetworkInterface::default()
            }],
            packages: packages
                .into_iter()
                .map(|name| Package {
                    name: name.into(),
                    arch: "amd64".into(),
                    version: "1.0".into(),
                    manager: PackageManager::Dpkg,
                })
                .collect(),
            zvm: userid.map(|userid| ZvmGuest { userid: userid.into(), cpus_total: cpus, ..ZvmGuest::default() }),
            personalization: vec![],
        });
    (prop::sample::select(vec!["online", "offline"]), prop::option::of(inventory)).prop_map(|(state, inventory)| {
        facts_document(&SystemFacts { name: "sys".into(), state: state.into() }, inventory.as_ref())
    })
}

proptest! {
    // No failure persistence: integration tests have no source file proptest can place a regressions file next to.
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(source in any::<String>()) {
        check_error_position(&source);
    }

    #[test]
    fn token_soup_never_panics(source in token_soup()) {
        check_error_position(&source);
    }

    #[test]
    fn canonical_form_parses_back_to_the_same_tree(expr in expr()) {
        let canonical = expr.to_string();
        let query = Query::parse(&canonical).map_err(|error| TestCaseError::fail(error.render(&canonical)))?;
        prop_assert_eq!(query.expr(), &expr);
        prop_assert_eq!(query.canonical(), canonical);
    }

    #[test]
    fn not_is_exact_negation(expr in expr(), facts in facts()) {
        let query = Query::parse(&expr.to_string()).map_err(|error| TestCaseError::fail(error.to_string()))?;
        let negated = Query::parse(&format!("not ({query})")).map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(negated.matches(&facts), !query.matches(&facts));
    }

    #[test]
    fn and_or_agree_with_their_parts(a in expr(), b in expr(), facts in facts()) {
        let parse = |source: String| Query::parse(&source).map_err(|error| TestCaseError::fail(error.to_string()));
        let (qa, qb) = (parse(a.to_string())?, parse(b.to_string())?);
        let both = parse(format!("({a}) and ({b})"))?;
        let either = parse(format!("({a}) or ({b})"))?;
        prop_assert_eq!(both.matches(&facts), qa.matches(&facts) && qb.matches(&facts));
        prop_assert_eq!(either.matches(&facts), qa.matches(&facts) || qb.matches(&facts));
    }
}
