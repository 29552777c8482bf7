//! Splits a query into tokens, each with the 1-based character column where it starts.

use super::error::{QueryError, QueryErrorKind};

/// One token of the query language.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    /// A name: a field name or a keyword (`and`, `or`, `not`, `in`, `contains`, `exists`, `true`, `false`).
    /// Keywords are recognised by the parser, case-insensitively.
    Ident(String),
    /// A double-quoted string literal, with its escapes already resolved.
    Str(String),
    /// A number literal.
    Number(f64),
    Dot,
    Comma,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Tilde,
    /// A character that starts no token; the parser reports it with what it expected there.
    Unknown(char),
    /// A malformed token (an unterminated string, a bad escape, a malformed number). Lexing stops here; the parser
    /// reports this error when it reaches the token, so that an earlier mistake is reported first.
    Error(Box<QueryError>),
    /// The end of the query.
    End,
}

/// A token and where it is in the query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spanned {
    pub token: Token,
    /// 1-based character column of the token's first character.
    pub position: usize,
    /// The token's text as written (empty for [`Token::End`]).
    pub text: String,
}

impl Spanned {
    /// The error to report when this token is not what the parser `expected`: the lexer's own error for a
    /// malformed token, otherwise an error of `kind` naming the token.
    pub fn unexpected(&self, kind: QueryErrorKind, expected: impl Into<String>) -> QueryError {
        match &self.token {
            Token::Error(error) => (**error).clone(),
            _ => QueryError::new(kind, self.position, expected, self.describe()),
        }
    }

    /// Describes the token for an error message: `"foo"`, `the string "x"`, `the number 2`, `the end of the query`.
    /// Tokens longer than 40 characters are cut short with `…`.
    pub fn describe(&self) -> String {
        let text = shorten(&self.text);
        match &self.token {
            Token::End => "the end of the query".to_owned(),
            Token::Str(_) => format!("the string {text}"),
            Token::Number(_) => format!("the number {}", shorten(&text)),
            Token::Unknown(c) => quote_char(*c),
            _ => format!("\"{text}\""),
        }
    }
}

/// Splits `source` into tokens; the last one is always [`Token::End`]. A malformed token ends the list with a
/// [`Token::Error`] before the end.
pub(crate) fn tokenize(source: &str) -> Vec<Spanned> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    if let Err(error) = lex(&chars, &mut tokens) {
        let position = error.position;
        tokens.push(Spanned { token: Token::Error(Box::new(error)), position, text: String::new() });
    }
    // The end is reported just past the last character that is not whitespace, which is where a caret under it is
    // most useful.
    let end = chars.iter().rposition(|c| !c.is_whitespace()).map_or(0, |last| last + 1);
    tokens.push(Spanned { token: Token::End, position: end + 1, text: String::new() });
    tokens
}

/// Appends the tokens of `chars` to `tokens`, up to the first malformed one.
fn lex(chars: &[char], tokens: &mut Vec<Spanned>) -> Result<(), QueryError> {
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let token = match c {
            '.' => single(&mut i, Token::Dot),
            ',' => single(&mut i, Token::Comma),
            '(' => single(&mut i, Token::LParen),
            ')' => single(&mut i, Token::RParen),
            '[' => single(&mut i, Token::LBracket),
            ']' => single(&mut i, Token::RBracket),
            '~' => single(&mut i, Token::Tilde),
            '=' => {
                // `==` is a common habit from other languages; accept it as a clearer error than "found =".
                if chars.get(i + 1) == Some(&'=') {
                    return Err(QueryError::syntax(i + 1, "\"=\" (equality is a single \"=\")", "\"==\""));
                }
                single(&mut i, Token::Eq)
            }
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    i += 2;
                    Token::Ne
                } else {
                    return Err(QueryError::syntax(i + 1, "\"!=\" (use `not` for negation)", "\"!\""));
                }
            }
            '<' => two(chars, &mut i, Token::Lt, Token::Le),
            '>' => two(chars, &mut i, Token::Gt, Token::Ge),
            '"' => Token::Str(string(chars, &mut i)?),
            '-' | '0'..='9' => Token::Number(number(chars, &mut i)?),
            c if c.is_ascii_alphabetic() || c == '_' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                Token::Ident(chars[start..i].iter().collect())
            }
            other => single(&mut i, Token::Unknown(other)),
        };
        tokens.push(Spanned { token, position: start + 1, text: chars[start..i].iter().collect() });
    }
    Ok(())
}

/// Cuts `text` to at most 40 characters for an error message, ending it with `…` when it was longer.
fn shorten(text: &str) -> String {
    const LONGEST: usize = 40;
    if text.chars().count() > LONGEST {
        text.chars().take(LONGEST - 1).chain(['…']).collect()
    } else {
        text.to_owned()
    }
}

/// Shows a character for an error message, in double quotes and escaped where it is not printable.
fn quote_char(c: char) -> String {
    format!("\"{}\"", c.escape_debug())
}

fn single(i: &mut usize, token: Token) -> Token {
    *i += 1;
    token
}

/// A one-character operator that becomes a different one when followed by `=` (`<` and `<=`).
fn two(chars: &[char], i: &mut usize, alone: Token, with_eq: Token) -> Token {
    if chars.get(*i + 1) == Some(&'=') {
        *i += 2;
        with_eq
    } else {
        *i += 1;
        alone
    }
}

/// Reads a string literal starting at the opening quote `chars[*i]`.
fn string(chars: &[char], i: &mut usize) -> Result<String, QueryError> {
    let open = *i;
    *i += 1;
    let mut value = String::new();
    loop {
        let Some(&c) = chars.get(*i) else {
            return Err(QueryError::syntax(
                open + 1,
                "a closing \" for the string that starts here",
                "the end of the query",
            ));
        };
        *i += 1;
        match c {
            '"' => return Ok(value),
            '\\' => value.push(escape(chars, i)?),
            c => value.push(c),
        }
    }
}

/// Resolves the escape after a backslash; `*i` points just past the backslash.
fn escape(chars: &[char], i: &mut usize) -> Result<char, QueryError> {
    const EXPECTED: &str = "an escape (\\\", \\\\, \\n, \\t, \\r or \\u{...})";
    let backslash = *i - 1;
    let Some(&c) = chars.get(*i) else {
        return Err(QueryError::syntax(backslash + 1, EXPECTED, "the end of the query"));
    };
    *i += 1;
    Ok(match c {
        '"' => '"',
        '\\' => '\\',
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'u' => {
            let bad = |found: String| {
                QueryError::syntax(
                    backslash + 1,
                    "a Unicode escape \\u{X} with 1 to 6 hex digits naming a character",
                    found,
                )
            };
            if chars.get(*i) != Some(&'{') {
                return Err(bad("\"\\u\" without \"{\"".to_owned()));
            }
            let digits_start = *i + 1;
            let mut end = digits_start;
            while end < chars.len() && chars[end].is_ascii_hexdigit() && end - digits_start < 6 {
                end += 1;
            }
            let digits: String = chars[digits_start..end].iter().collect();
            if chars.get(end) != Some(&'}') || digits.is_empty() {
                let shown: String = chars[backslash..(end + 1).min(chars.len())].iter().collect();
                return Err(bad(format!("{shown:?}")));
            }
            *i = end + 1;
            let code = u32::from_str_radix(&digits, 16).unwrap_or(u32::MAX);
            char::from_u32(code).ok_or_else(|| bad(format!("\"\\u{{{digits}}}\", which is not a character")))?
        }
        other => return Err(QueryError::syntax(backslash + 1, EXPECTED, format!("\"\\{other}\""))),
    })
}

/// Reads a number: an optional `-`, digits, and optionally `.` and more digits.
fn number(chars: &[char], i: &mut usize) -> Result<f64, QueryError> {
    let start = *i;
    if chars[*i] == '-' {
        *i += 1;
    }
    let digits = |i: &mut usize| {
        let from = *i;
        while *i < chars.len() && chars[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > from
    };
    if !digits(i) {
        let found = chars.get(*i).map_or_else(|| "the end of the query".to_owned(), |&c| quote_char(c));
        return Err(QueryError::syntax(*i + 1, "a digit after \"-\"", found));
    }
    if chars.get(*i) == Some(&'.') && chars.get(*i + 1).is_some_and(char::is_ascii_digit) {
        *i += 1;
        digits(i);
    }
    if let Some(&c) = chars.get(*i)
        && (c.is_ascii_alphabetic() || c == '_' || c == '.')
    {
        let found = quote_char(c);
        return Err(QueryError::syntax(*i + 1, "a space or an operator after the number", found));
    }
    let text: String = chars[start..*i].iter().collect();
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(QueryError::syntax(
            start + 1,
            "a number of at most about 308 digits",
            format!("the number {}", shorten(&text)),
        )),
    }
}
