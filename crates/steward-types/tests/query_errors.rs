//! Error reporting of the query language: exact messages and columns for typical mistakes, the limits against
//! hostile input, and the caret rendering for the command line.

use steward_types::query::{MAX_DEPTH, MAX_LENGTH, Query, QueryError, QueryErrorKind};

fn error(source: &str) -> QueryError {
    match Query::parse(source) {
        Ok(query) => panic!("{source:?} parsed as {query:?}"),
        Err(error) => error,
    }
}

/// Asserts the one-line message of the error `source` produces.
fn assert_error(source: &str, message: &str) {
    assert_eq!(error(source).to_string(), message, "for {source:?}");
}

#[test]
fn unknown_operator_word() {
    let e = error(r#"os.id = "debian" and cpu.count foo 2"#);
    assert_eq!(
        e.to_string(),
        r#"at column 32: expected a comparison operator (=, !=, <, <=, >, >=, ~, in, contains), found "foo""#
    );
    assert_eq!(e.position, 32);
    assert_eq!(e.kind, QueryErrorKind::Syntax);
    assert_eq!(e.expected, "a comparison operator (=, !=, <, <=, >, >=, ~, in, contains)");
    assert_eq!(e.found, "\"foo\"");
}

#[test]
fn misspelt_field_suggests_the_closest() {
    let e = error(r#"os.nmae = "SLES""#);
    assert_eq!(e.to_string(), "at column 4: unknown field `os.nmae`; did you mean `os.name`?");
    assert_eq!(e.kind, QueryErrorKind::UnknownField);
    assert_eq!(e.suggestion.as_deref(), Some("os.name"));
    assert_eq!(
        serde_json::to_value(&e).ok(),
        Some(serde_json::json!({
            "position": 4,
            "kind": "unknown_field",
            "expected": "one of the fields of `os` (id, id_like, name, version_id, version, pretty_name)",
            "found": "`os.nmae`",
            "suggestion": "os.name",
        }))
    );
    assert_error(r#"hostnme = "a""#, "at column 1: unknown field `hostnme`; did you mean `hostname`?");
    assert_error(
        r#"fs["/"].used_pcnt < 9"#,
        r#"at column 9: unknown field `fs["/"].used_pcnt`; did you mean `fs["/"].used_pct`?"#,
    );
    assert_error(r#"userid = "LINUX01""#, "at column 1: unknown field `userid`; did you mean `zvm.userid`?");
    assert_error(r#"OS.id = "x""#, "at column 1: unknown field `OS`; did you mean `os`?");
}

#[test]
fn unknown_field_without_a_close_match_lists_the_fields() {
    assert_error(
        "cpu.speed > 2",
        "at column 5: unknown field `cpu.speed`; expected one of the fields of `cpu` (count, model)",
    );
    let e = error("colour = \"red\"");
    assert_eq!(e.suggestion, None);
    assert!(e.expected.starts_with("one of the top-level fields (name, state, hostname"), "{}", e.expected);
}

#[test]
fn number_field_against_a_string() {
    assert_error(
        r#"cpu.count = "two""#,
        r#"at column 13: expected a number, because `cpu.count` is a number, found the string "two""#,
    );
    assert_eq!(error(r#"cpu.count = "two""#).kind, QueryErrorKind::Type);
}

#[test]
fn string_field_against_a_number_or_a_bare_word() {
    assert_error(
        "os.version_id = 12",
        r#"at column 17: expected a string in double quotes, because `os.version_id` is a string (write "12"), found the number 12"#,
    );
    assert_error(
        "os.id = debian",
        r#"at column 9: expected a string in double quotes (write "debian"), found "debian""#,
    );
}

#[test]
fn ordering_on_strings() {
    assert_error(
        r#"os.name < "x""#,
        r#"at column 9: expected an operator that applies to `os.name`, a string (=, !=, ~, in, contains), found "<""#,
    );
    assert_error(
        "disk[\"vda\"].rotational >= true",
        "at column 24: expected an operator that applies to `disk[\"vda\"].rotational`, a boolean (=, !=, in), found \">=\"",
    );
}

#[test]
fn glob_and_contains_on_numbers() {
    assert_error(
        r#"cpu.count ~ "1*""#,
        r#"at column 11: expected an operator that applies to `cpu.count`, a number (=, !=, <, <=, >, >=, in), found "~""#,
    );
    assert_error(
        "cpu.count contains 2",
        r#"at column 11: expected an operator that applies to `cpu.count`, a number (=, !=, <, <=, >, >=, in), found "contains""#,
    );
}

#[test]
fn equality_on_a_list() {
    assert_error(
        r#"addresses = "10.0.0.5""#,
        r#"at column 11: expected an operator that applies to `addresses`, a list of strings (contains), found "=""#,
    );
}

#[test]
fn indexing_a_group_and_dotting_into_a_map() {
    assert_error(
        r#"os["id"] = "y""#,
        r#"at column 3: expected "." and a field of `os` (id, id_like, name, version_id, version, pretty_name), found "[""#,
    );
    assert_error(
        "fs.used_pct < 90",
        r#"at column 3: expected ["mount point"] after `fs`, for example `fs["/"]`, found ".""#,
    );
    assert_error(
        r#"fs[/] = 1"#,
        r#"at column 4: expected the mount point in double quotes, as in `fs["..."]`, found "/""#,
    );
    assert_error(
        r#"hostname.short = "x""#,
        "at column 9: expected a comparison operator (=, !=, <, <=, >, >=, ~, in, contains); `hostname` is a string \
         and has no fields or keys, found \".\"",
    );
}

#[test]
fn comparing_a_group_or_map_entry() {
    assert_error(
        r#"os = "debian""#,
        r#"at column 4: expected "." and a field of `os` (id, id_like, name, version_id, version, pretty_name), found "=""#,
    );
    assert_error(
        r#"package["bash"]"#,
        r#"at column 16: expected "." and a field of `package["bash"]` (version, arch, manager), found the end of the query"#,
    );
}

#[test]
fn unbalanced_parentheses() {
    assert_error(
        r#"(os.id = "debian""#,
        r#"at column 18: expected "and", "or" or ")" to close the "(" at column 1, found the end of the query"#,
    );
    assert_error(
        r#"os.id = "debian")"#,
        r#"at column 17: expected "and", "or" or the end of the query (this ")" closes no "("), found ")""#,
    );
}

#[test]
fn habits_from_other_languages() {
    assert_error(r#"os.id == "debian""#, r#"at column 7: expected "=" (equality is a single "="), found "==""#);
    assert_error(r#"!exists zvm"#, r#"at column 1: expected "!=" (use `not` for negation), found "!""#);
    assert_error(
        r#"os.id != "a" && cpu.count = 1"#,
        r#"at column 14: expected "and", "or" or the end of the query, found "&""#,
    );
    assert_error(
        r#""10.0.0.5" in addresses"#,
        r#"at column 1: expected a condition (a field name, "not", "exists" or "("); a comparison starts with the field, as in `addresses contains "10.0.0.5"`, found the string "10.0.0.5""#,
    );
}

#[test]
fn incomplete_queries() {
    let condition = r#"expected a condition (a field name, "not", "exists" or "("), found the end of the query"#;
    assert_error("", &format!("at column 1: {condition}"));
    assert_error("   ", &format!("at column 1: {condition}"));
    assert_error("cpu.count >   ", "at column 12: expected a number, found the end of the query");
    assert_error(r#"os.id = "debian" and"#, &format!("at column 21: {condition}"));
    assert_error("not", &format!("at column 4: {condition}"));
    assert_error(
        "cpu.count",
        "at column 10: expected a comparison operator (=, !=, <, <=, >, >=, ~, in, contains), found the end of the query",
    );
    assert_error("cpu.count >=", "at column 13: expected a number, found the end of the query");
    assert_error("exists", r#"at column 7: expected a field name after "exists", found the end of the query"#);
    assert_error("and", r#"at column 1: expected a condition (a field name, "not", "exists" or "("), found "and""#);
}

#[test]
fn lists() {
    assert_error(
        "cpu.count in 2",
        r#"at column 14: expected "[" and a list of values after "in", as in `cpu.count in [...]`, found the number 2"#,
    );
    assert_error(
        r#"cpu.count in [2, "4"]"#,
        r#"at column 18: expected a number, because `cpu.count` is a number, found the string "4""#,
    );
    assert_error("cpu.count in [2 4]", r#"at column 17: expected "," or "]", found the number 4"#);
    assert_error("cpu.count in [2,]", "at column 17: expected a number, found \"]\"");
}

#[test]
fn literals() {
    assert_error(
        r#"os.id = "debian"#,
        r#"at column 9: expected a closing " for the string that starts here, found the end of the query"#,
    );
    assert_error(
        r#"os.id = "a\qb""#,
        r#"at column 11: expected an escape (\", \\, \n, \t, \r or \u{...}), found "\q""#,
    );
    assert_error(
        r#"os.id = "\u{110000}""#,
        r#"at column 10: expected a Unicode escape \u{X} with 1 to 6 hex digits naming a character, found "\u{110000}", which is not a character"#,
    );
    assert_error(
        r#"os.id = "\u{}""#,
        r#"at column 10: expected a Unicode escape \u{X} with 1 to 6 hex digits naming a character, found "\\u{}""#,
    );
    assert_error("cpu.count >= -", r#"at column 15: expected a digit after "-", found the end of the query"#);
    assert_error("cpu.count >= 2x", r#"at column 15: expected a space or an operator after the number, found "x""#);
    assert_error("cpu.count >= 1.2.3", r#"at column 17: expected a space or an operator after the number, found ".""#);
    assert_error("disk[\"vda\"].rotational = yes", r#"at column 26: expected true or false, found "yes""#);
    let huge = format!("cpu.count < 1{}", "0".repeat(400));
    assert_error(
        &huge,
        &format!("at column 13: expected a number of at most about 308 digits, found the number 1{}…", "0".repeat(38)),
    );
    let long = format!("cpu.count = \"{}\"", "x".repeat(100));
    assert_error(
        &long,
        &format!(
            "at column 13: expected a number, because `cpu.count` is a number, found the string \"{}…",
            "x".repeat(38)
        ),
    );
}

#[test]
fn earlier_mistakes_are_reported_before_later_malformed_tokens() {
    assert_error(r#"os.nmae = "x"#, "at column 4: unknown field `os.nmae`; did you mean `os.name`?");
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_error(
        r#"os.id = "é日本" and cpu.count foo 2"#,
        r#"at column 29: expected a comparison operator (=, !=, <, <=, >, >=, ~, in, contains), found "foo""#,
    );
    assert_error("hostname = \"x\" § 2", r#"at column 16: expected "and", "or" or the end of the query, found "§""#);
}

#[test]
fn too_long_queries_are_rejected() {
    let long = format!("hostname = \"{}\"", "a".repeat(MAX_LENGTH));
    let e = error(&long);
    assert_eq!(e.kind, QueryErrorKind::Limit);
    assert_eq!(e.position, MAX_LENGTH + 1);
    assert_eq!(
        e.to_string(),
        format!(
            "at column 4097: expected a query of at most 4096 characters, found a query of {} characters",
            MAX_LENGTH + 13
        )
    );
    let just_fits = format!("hostname = \"{}\"", "a".repeat(MAX_LENGTH - 13));
    assert_eq!(just_fits.chars().count(), MAX_LENGTH);
    assert!(Query::parse(&just_fits).is_ok());
}

#[test]
fn nesting_is_limited() {
    let nested = |depth: usize| format!("{}cpu.count > 1{}", "(".repeat(depth), ")".repeat(depth));
    assert!(Query::parse(&nested(MAX_DEPTH)).is_ok());
    let e = error(&nested(MAX_DEPTH + 1));
    assert_eq!(e.kind, QueryErrorKind::Limit);
    assert_eq!(
        e.to_string(),
        r#"at column 65: expected at most 64 levels of nested parentheses and "not", found level 65"#
    );

    let nots = |depth: usize| format!("{}exists zvm", "not ".repeat(depth));
    assert!(Query::parse(&nots(MAX_DEPTH)).is_ok());
    assert_eq!(error(&nots(MAX_DEPTH + 1)).position, 4 * MAX_DEPTH + 1);

    let mixed = "not (".repeat(40) + "exists zvm" + &")".repeat(40);
    assert_eq!(error(&mixed).position, 5 * 32 + 1);
}

#[test]
fn hostile_nesting_fails_without_overflowing_the_stack() {
    for source in ["(".repeat(4000), "not ".repeat(1000), "not (".repeat(800), "[".repeat(4000), "\"".repeat(4001)] {
        let e = error(&source);
        assert!((1..=source.chars().count() + 1).contains(&e.position), "{e}");
    }
}

#[test]
fn render_puts_a_caret_under_the_column() {
    let source = r#"os.id = "debian" and cpu.count foo 2"#;
    assert_eq!(
        error(source).render(source),
        "os.id = \"debian\" and cpu.count foo 2\n                               ^\n\
         at column 32: expected a comparison operator (=, !=, <, <=, >, >=, ~, in, contains), found \"foo\""
    );
    let source = "cpu.count >=";
    assert_eq!(
        error(source).render(source),
        "cpu.count >=\n            ^\nat column 13: expected a number, found the end of the query"
    );
}

#[test]
fn render_shows_only_the_line_with_the_error() {
    // The tab is shown as one space so that the caret lines up under "foo".
    let source = "os.id = \"debian\" and\n\tcpu.count foo 2";
    let lines: Vec<String> = error(source).render(source).lines().map(str::to_owned).collect();
    assert_eq!(lines[0], " cpu.count foo 2");
    assert_eq!(lines[1], format!("{}^", " ".repeat(11)));
    assert!(lines[2].starts_with("at column 33: expected a comparison operator"));
    assert_eq!(lines.len(), 3);
}

#[test]
fn render_at_the_end_of_an_earlier_line() {
    let source = "(cpu.count > 1\n";
    let rendered = error(source).render(source);
    assert_eq!(rendered.lines().next(), Some("(cpu.count > 1"));
    assert_eq!(rendered.lines().nth(1), Some("              ^"));
}

/// The rows of the markdown table that follows the line starting with `heading` in the user documentation, as
/// (first cell without its backticks, second cell).
fn documented_rows(heading: &str) -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/query-language.md");
    let docs = std::fs::read_to_string(path).expect("docs/query-language.md exists");
    let table = docs.split_once(heading).expect("heading in docs").1;
    table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            (cells[0].trim_matches('`').to_owned(), cells[1].to_owned())
        })
        .collect()
}

#[test]
fn documented_error_messages_are_the_real_ones() {
    let rows = documented_rows("Typical mistakes");
    assert!(rows.len() >= 10);
    for (source, message) in rows {
        assert_error(&source, &message);
    }
}

#[test]
fn documented_examples_parse() {
    let rows = documented_rows("## Quick examples");
    assert!(rows.len() >= 10);
    for (source, _) in rows {
        if let Err(error) = Query::parse(&source) {
            panic!("{}", error.render(&source));
        }
    }
}
