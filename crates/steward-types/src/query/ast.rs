//! The syntax tree of a query and its canonical printer.
//!
//! The tree is built only by the parser, which has already checked it against the field schema, so every
//! [`Expr`] inside a [`Query`](super::Query) is well typed. Printing an [`Expr`] with [`Display`](fmt::Display)
//! gives the canonical form of the query: keywords in lower case, single spaces, and parentheses only where the
//! precedence of `or` < `and` < `not` requires them. Parsing the canonical form gives back an equal tree.

use std::fmt;

/// A boolean condition over a facts document.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// True when any of the conditions is true. Has at least two conditions, none of which is itself an `Or`:
    /// the parser flattens `a or (b or c)` into one list.
    Or(Vec<Expr>),
    /// True when all of the conditions are true. Has at least two conditions, none of which is itself an `And`.
    And(Vec<Expr>),
    /// True when the condition is false (including when it is false because a field is missing).
    Not(Box<Expr>),
    /// `exists PATH`: true when the facts document has a value, group or map at the path.
    Exists(Path),
    /// `PATH OP VALUE`: true when the field is present, has the field's type, and the comparison holds.
    Compare {
        /// The field compared.
        path: Path,
        /// How it is compared.
        op: CompareOp,
        /// The literal it is compared with.
        value: Literal,
    },
    /// `PATH in [VALUE, ...]`: true when the field is present and equal to one of the values.
    In {
        /// The field compared.
        path: Path,
        /// The values it may equal; an empty list matches nothing.
        values: Vec<Literal>,
    },
}

/// A comparison operator between a field and one literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `=`: equal (strings case-sensitively, numbers as 64-bit floating point).
    Eq,
    /// `!=`: present and not equal.
    Ne,
    /// `<` on numbers.
    Lt,
    /// `<=` on numbers.
    Le,
    /// `>` on numbers.
    Gt,
    /// `>=` on numbers.
    Ge,
    /// `~`: the string matches a glob pattern with `*` and `?`, case-sensitively.
    Glob,
    /// `contains`: a list has the element, or a string has the substring.
    Contains,
}

impl CompareOp {
    /// The operator as a query writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Glob => "~",
            CompareOp::Contains => "contains",
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A constant in a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A double-quoted string, with its escapes resolved.
    String(String),
    /// A number; always finite.
    Number(f64),
    /// `true` or `false`.
    Bool(bool),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => write_string(f, s),
            Literal::Number(n) => write!(f, "{n}"),
            Literal::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Writes `s` as a string literal, escaping what the lexer would not read back as itself.
fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c if c.is_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// One step of a [`Path`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A fixed field name: `os`, `used_pct`.
    Field(String),
    /// A key into a keyed map, written `["..."]`: a mount point, disk, interface or package name.
    Key(String),
}

/// The location of a value in the facts document, such as `os.id` or `fs["/"].used_pct`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path(pub Vec<Segment>);

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Field(name) if index == 0 => f.write_str(name)?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Key(key) => {
                    f.write_str("[")?;
                    write_string(f, key)?;
                    f.write_str("]")?;
                }
            }
        }
        Ok(())
    }
}

impl Expr {
    /// Binding strength for the printer: `or` is weakest, then `and`, then `not`, then atoms.
    fn precedence(&self) -> u8 {
        match self {
            Expr::Or(_) => 0,
            Expr::And(_) => 1,
            Expr::Not(_) => 2,
            _ => 3,
        }
    }

    /// Writes `child`, in parentheses when it binds no tighter than `min` requires.
    fn write_child(f: &mut fmt::Formatter<'_>, child: &Expr, min: u8) -> fmt::Result {
        if child.precedence() < min { write!(f, "({child})") } else { write!(f, "{child}") }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Or(items) | Expr::And(items) => {
                let (keyword, min) = if matches!(self, Expr::Or(_)) { (" or ", 1) } else { (" and ", 2) };
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_str(keyword)?;
                    }
                    Expr::write_child(f, item, min)?;
                }
                Ok(())
            }
            Expr::Not(inner) => {
                f.write_str("not ")?;
                Expr::write_child(f, inner, 2)
            }
            Expr::Exists(path) => write!(f, "exists {path}"),
            Expr::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Expr::In { path, values } => {
                write!(f, "{path} in [")?;
                for (index, value) in values.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{value}")?;
                }
                f.write_str("]")
            }
        }
    }
}
