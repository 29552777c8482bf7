//! Evaluation of a checked query against a facts document.
//!
//! A comparison is true only when the field is present and holds a value of the expected type; everything else,
//! including a missing field, makes it false. `not` then negates that result as it is.

use serde_json::Value;

use super::ast::{CompareOp, Expr, Literal, Path, Segment};

/// Evaluates `expr` against `facts`.
pub(crate) fn eval(expr: &Expr, facts: &Value) -> bool {
    match expr {
        Expr::Or(items) => items.iter().any(|item| eval(item, facts)),
        Expr::And(items) => items.iter().all(|item| eval(item, facts)),
        Expr::Not(inner) => !eval(inner, facts),
        Expr::Exists(path) => lookup(facts, path).is_some_and(|value| !value.is_null()),
        Expr::Compare { path, op, value } => lookup(facts, path).is_some_and(|field| compare(field, *op, value)),
        Expr::In { path, values } => {
            lookup(facts, path).is_some_and(|field| values.iter().any(|value| equals(field, value) == Some(true)))
        }
    }
}

/// The value at `path`, if every step of it exists.
fn lookup<'a>(facts: &'a Value, path: &Path) -> Option<&'a Value> {
    path.0.iter().try_fold(facts, |value, segment| match segment {
        Segment::Field(name) | Segment::Key(name) => value.as_object()?.get(name),
    })
}

/// Whether `field` equals `literal`, or `None` when they are of different types (or the field is null).
fn equals(field: &Value, literal: &Literal) -> Option<bool> {
    match (field, literal) {
        (Value::String(s), Literal::String(l)) => Some(s == l),
        (Value::Number(n), Literal::Number(l)) => Some(n.as_f64()? == *l),
        (Value::Bool(b), Literal::Bool(l)) => Some(b == l),
        _ => None,
    }
}

fn compare(field: &Value, op: CompareOp, literal: &Literal) -> bool {
    match op {
        CompareOp::Eq => equals(field, literal) == Some(true),
        CompareOp::Ne => equals(field, literal) == Some(false),
        CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge => {
            let (Some(a), Literal::Number(b)) = (field.as_f64(), literal) else {
                return false;
            };
            match op {
                CompareOp::Lt => a < *b,
                CompareOp::Le => a <= *b,
                CompareOp::Gt => a > *b,
                _ => a >= *b,
            }
        }
        CompareOp::Glob => match (field, literal) {
            (Value::String(s), Literal::String(pattern)) => glob_match(pattern, s),
            _ => false,
        },
        CompareOp::Contains => match (field, literal) {
            (Value::String(s), Literal::String(needle)) => s.contains(needle.as_str()),
            (Value::Array(items), literal) => items.iter().any(|item| equals(item, literal) == Some(true)),
            _ => false,
        },
    }
}

/// One element of a compiled glob pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
enum GlobToken {
    /// `*`: any run of characters, including none.
    Star,
    /// `?`: exactly one character.
    One,
    /// A character that must appear as it is (including `*`, `?` and `\` written with a backslash before them).
    Char(char),
}

/// Whether `text` matches the glob `pattern`, case-sensitively and over the whole text.
///
/// `*` matches any run of characters, `?` exactly one, and a backslash makes the next character literal. The
/// matcher backtracks only to the most recent `*`, so it runs in time proportional to the product of the lengths
/// at worst, whatever the pattern.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '*' => GlobToken::Star,
            '?' => GlobToken::One,
            '\\' => GlobToken::Char(chars.next().unwrap_or('\\')),
            c => GlobToken::Char(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last star: the token after it, and the text position it currently stands for.
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(GlobToken::Star) => {
                resume = Some((p + 1, t));
                p += 1;
            }
            Some(GlobToken::One) => {
                p += 1;
                t += 1;
            }
            Some(GlobToken::Char(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match resume {
                Some((after_star, from)) => {
                    resume = Some((after_star, from + 1));
                    p = after_star;
                    t = from + 1;
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|token| *token == GlobToken::Star)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_star_and_question_mark() {
        assert!(glob_match("1:9.*", "1:9.2p1-2"));
        assert!(!glob_match("1:9.*", "1:8.9p1"));
        assert!(glob_match("*", ""));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*.example.com", "web1.example.com"));
        assert!(!glob_match("*.example.com", "example.com"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(glob_match("a*b*c", "abcbc"));
        assert!(!glob_match("a*b*c", "abcb"));
        assert!(glob_match("ünï?ode*", "ünïcode😀"));
    }

    #[test]
    fn glob_is_case_sensitive_and_anchored() {
        assert!(!glob_match("Debian*", "debian"));
        assert!(!glob_match("deb", "debian"));
        assert!(!glob_match("ian", "debian"));
    }

    #[test]
    fn glob_backslash_escapes() {
        assert!(glob_match("a\\*b", "a*b"));
        assert!(!glob_match("a\\*b", "axb"));
        assert!(glob_match("what\\?", "what?"));
        assert!(glob_match("trailing\\", "trailing\\"));
    }

    #[test]
    fn glob_stays_fast_on_adversarial_patterns() {
        let pattern = "*a".repeat(100) + "b";
        let text = "a".repeat(3000);
        assert!(!glob_match(&pattern, &text));
    }
}
