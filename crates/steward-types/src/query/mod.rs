//! The query language of dynamic groups.
//!
//! A dynamic group is defined by a query over the inventory of each system, for example
//!
//! ```text
//! os.id = "debian" and cpu.count >= 2 and fs["/"].used_pct < 90
//! ```
//!
//! A [`Query`] is parsed once, when the group is created or changed, and is then evaluated against the facts
//! document of every system (see [`facts_document`]) whenever its inventory changes. Parsing checks the query against
//! the schema of known fields ([`fields`]), so a misspelt field or a comparison that cannot work (a number field
//! against a string, `<` on a string) is reported to the user at once with its column, instead of quietly matching
//! nothing.
//!
//! # Grammar
//!
//! In EBNF; whitespace may appear between any two tokens, and keywords (`and`, `or`, `not`, `in`, `contains`,
//! `exists`, `true`, `false`) are case-insensitive. Field names are case-sensitive.
//!
//! ```ebnf
//! query      = or_expr ;
//! or_expr    = and_expr , { "or" , and_expr } ;
//! and_expr   = not_expr , { "and" , not_expr } ;
//! not_expr   = "not" , not_expr | primary ;
//! primary    = "(" , or_expr , ")" | "exists" , path | comparison ;
//! comparison = path , ( compare_op , literal | "in" , list ) ;
//! compare_op = "=" | "!=" | "<" | "<=" | ">" | ">=" | "~" | "contains" ;
//! list       = "[" , [ literal , { "," , literal } ] , "]" ;
//! path       = name , { "." , name | "[" , string , "]" } ;
//! literal    = string | number | "true" | "false" ;
//! name       = ( letter | "_" ) , { letter | digit | "_" } ;
//! number     = [ "-" ] , digit , { digit } , [ "." , digit , { digit } ] ;
//! string     = '"' , { character - ( '"' | "\" ) | escape } , '"' ;
//! escape     = "\" , ( '"' | "\" | "n" | "t" | "r" | "u{" , hex digit , { hex digit } , "}" ) ;
//! ```
//!
//! # Types
//!
//! Every field has a [`FieldType`]. Strings take `=`, `!=`, `~` (glob with `*` and `?`), `in` and `contains`
//! (substring); numbers take `=`, `!=`, `<`, `<=`, `>`, `>=` and `in`; booleans take `=`, `!=` and `in`; lists of
//! strings take `contains` (element). The literal must have the field's type. Groups (`os`) and keyed maps (`fs`)
//! cannot be compared, only tested with `exists`; keyed maps are indexed with `["key"]`, groups with `.name`.
//!
//! # Semantics
//!
//! A comparison is true only when the field is present in the facts document and the comparison holds. A missing
//! field (no inventory yet, no z/VM facts, no such mount point) makes every comparison on it false, `!=` included:
//! `zvm.userid != "LINUX01"` is false on a system that is not a z/VM guest. `not` negates the result as it is, so
//! `not zvm.userid = "LINUX01"` is true there. `exists path` tests whether a field, group or map entry is present.
//! Numbers compare as 64-bit floating point. String equality and glob matching are case-sensitive; in a glob, `*`
//! matches any run of characters, `?` one character, and a backslash makes the next character literal (written
//! `"\\*"` inside a query string).
//!
//! # Limits
//!
//! A query has at most [`MAX_LENGTH`] characters and at most [`MAX_DEPTH`] levels of parentheses and `not`; longer
//! or deeper queries are rejected with an error, so hostile input can neither exhaust the stack nor make the parser
//! slow.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

mod ast;
mod error;
mod eval;
mod facts;
mod lexer;
mod parser;
mod schema;

pub use ast::{CompareOp, Expr, Literal, Path, Segment};
pub use error::{QueryError, QueryErrorKind};
pub use facts::{SystemFacts, facts_document};
pub use schema::{FieldInfo, FieldType, fields};

/// The longest query accepted, in characters.
pub const MAX_LENGTH: usize = 4096;

/// The deepest nesting of parentheses and `not` accepted.
pub const MAX_DEPTH: usize = 64;

/// A parsed and type-checked dynamic-group query.
///
/// A `Query` keeps the text it was parsed from, which is what it displays and serializes as (a JSON string), and
/// what two queries are compared by; deserializing parses and checks the string, so a stored or received `Query` is
/// always valid. [`Query::canonical`] gives a normalized text of the same query.
///
/// ```
/// # use steward_types::query::{Query, SystemFacts, facts_document};
/// let query = Query::parse(r#"state = "online" and not exists zvm"#).unwrap();
/// let facts = facts_document(&SystemFacts { name: "web1".into(), state: "online".into() }, None);
/// assert!(query.matches(&facts));
/// ```
#[derive(Debug, Clone)]
pub struct Query {
    source: String,
    expr: Expr,
}

impl Query {
    /// Parses `source` and checks it against the field schema.
    ///
    /// # Errors
    ///
    /// Returns a [`QueryError`] with the column of the first problem: a syntax error, an unknown field (with a
    /// suggestion when a known field is close), a type error, or a query over [`MAX_LENGTH`] characters or
    /// [`MAX_DEPTH`] levels deep.
    pub fn parse(source: &str) -> Result<Query, QueryError> {
        let expr = parser::parse(source)?;
        Ok(Query { source: source.to_owned(), expr })
    }

    /// Whether the system the facts document describes is a member of the group this query defines.
    pub fn matches(&self, facts: &Value) -> bool {
        eval::eval(&self.expr, facts)
    }

    /// The text the query was parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The syntax tree of the query.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The canonical text of the query: lower-case keywords, single spaces, and parentheses only where needed.
    /// Queries that differ only in layout, keyword case or redundant parentheses have the same canonical text.
    pub fn canonical(&self) -> String {
        self.expr.to_string()
    }
}

impl fmt::Display for Query {
    /// Writes the text the query was parsed from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Query {
    type Err = QueryError;

    fn from_str(source: &str) -> Result<Query, QueryError> {
        Query::parse(source)
    }
}

impl PartialEq for Query {
    /// Two queries are equal when their texts are.
    fn eq(&self, other: &Query) -> bool {
        self.source == other.source
    }
}

impl Eq for Query {}

impl Hash for Query {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

impl Serialize for Query {
    /// Serializes as the query text.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Query {
    /// Deserializes from a string, which must be a valid query.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Query, D::Error> {
        let source = String::deserialize(deserializer)?;
        Query::parse(&source).map_err(|error| serde::de::Error::custom(format!("invalid query: {error}")))
    }
}

impl utoipa::PartialSchema for Query {
    /// A query appears in the OpenAPI document as a string.
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A dynamic-group query over system inventory, for example \
                 `os.id = \"debian\" and cpu.count >= 2`; see docs/query-language.md.",
            ))
            .max_length(Some(MAX_LENGTH))
            .examples([Value::String(r#"os.id = "debian" and cpu.count >= 2 and fs["/"].used_pct < 90"#.into())])
            .into()
    }
}

impl utoipa::ToSchema for Query {
    /// The schema is named `Query` in the OpenAPI document.
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Query")
    }
}
