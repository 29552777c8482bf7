//! The error a query reports when it cannot be parsed or does not fit the field schema.

/// What kind of mistake a [`QueryError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum QueryErrorKind {
    /// The text does not follow the grammar: an unexpected token, an unterminated string, a bad escape.
    Syntax,
    /// A path names a field the schema does not have.
    UnknownField,
    /// The query is well formed but compares a field with a value or operator that does not fit its type, or uses
    /// a map without a key or indexes something that is not a map.
    Type,
    /// The query is longer or more deeply nested than the limits allow.
    Limit,
}

/// Why a query was rejected, with the column where the problem starts.
///
/// The [`Display`](std::fmt::Display) form is one line, for example
/// `at column 14: expected a comparison operator (=, !=, <, <=, >, >=, ~, in, contains), found "foo"`;
/// [`QueryError::render`] adds the query and a caret under the column, for command-line output. It serializes as an
/// object with the fields below, for API error details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("at column {position}: {}", self.message())]
pub struct QueryError {
    /// The 1-based column, counted in characters (not bytes) from the start of the query, where the problem starts.
    /// It is at most one past the last character, which is where "the end of the query" is.
    pub position: usize,
    /// What kind of mistake this is.
    pub kind: QueryErrorKind,
    /// What the parser expected at this position, in words, for example `a comparison operator (=, !=, ...)`.
    pub expected: String,
    /// What it found instead, for example `"foo"`, `the string "two"` or `the end of the query`.
    pub found: String,
    /// For [`QueryErrorKind::UnknownField`]: the known field whose name is closest to the one written, if any
    /// is close enough to be a likely typo.
    pub suggestion: Option<String>,
}

impl QueryError {
    /// Creates an error of the given kind at a 1-based character column.
    pub(crate) fn new(
        kind: QueryErrorKind,
        position: usize,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> QueryError {
        QueryError { position, kind, expected: expected.into(), found: found.into(), suggestion: None }
    }

    /// Creates a syntax error.
    pub(crate) fn syntax(position: usize, expected: impl Into<String>, found: impl Into<String>) -> QueryError {
        QueryError::new(QueryErrorKind::Syntax, position, expected, found)
    }

    /// The message without the column: `expected ..., found ...`, or for an unknown field
    /// ``unknown field `os.nmae`; did you mean `os.name`?``.
    pub fn message(&self) -> String {
        match self.kind {
            QueryErrorKind::UnknownField => match &self.suggestion {
                Some(suggestion) => format!("unknown field {}; did you mean `{suggestion}`?", self.found),
                None => format!("unknown field {}; expected {}", self.found, self.expected),
            },
            _ => format!("expected {}, found {}", self.expected, self.found),
        }
    }

    /// Renders the error for a terminal: the line of `query` that holds the error, a caret under the column, and the
    /// one-line message. `query` should be the text that was parsed; lines other than the one with the error are
    /// left out, and tabs are shown as single spaces so that the caret lines up.
    ///
    /// ```
    /// # use steward_types::query::Query;
    /// let source = "cpu.count >> 2";
    /// let error = Query::parse(source).unwrap_err();
    /// assert_eq!(
    ///     error.render(source),
    ///     "cpu.count >> 2\n           ^\nat column 12: expected a number, found \">\"",
    /// );
    /// ```
    pub fn render(&self, query: &str) -> String {
        let target = self.position.max(1) - 1;
        let mut line_start = 0;
        let mut line: Vec<char> = Vec::new();
        let mut column = target;
        for (index, c) in query.chars().enumerate() {
            if index == target {
                column = index - line_start;
            }
            if c == '\n' {
                if index >= target {
                    break;
                }
                line_start = index + 1;
                line.clear();
            } else {
                line.push(if c.is_control() { ' ' } else { c });
            }
        }
        if target >= query.chars().count() {
            column = target.saturating_sub(line_start);
        }
        let text: String = line.into_iter().collect();
        let text = text.trim_end();
        format!("{text}\n{}^\n{self}", " ".repeat(column))
    }
}
