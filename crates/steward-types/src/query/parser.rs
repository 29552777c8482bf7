//! The recursive-descent parser, which also checks the query against the field schema as it goes.

use super::ast::{CompareOp, Expr, Literal, Path, Segment};
use super::error::{QueryError, QueryErrorKind};
use super::lexer::{Spanned, Token, tokenize};
use super::schema::{Field, FieldType, Node, ROOT, suggest};
use super::{MAX_DEPTH, MAX_LENGTH};

/// What the parser says it expected where a comparison operator should be.
const COMPARISON_OPERATORS: &str = "a comparison operator (=, !=, <, <=, >, >=, ~, in, contains)";
/// What the parser says it expected where a condition should start.
const CONDITION: &str = "a condition (a field name, \"not\", \"exists\" or \"(\")";

/// Parses and type-checks `source`.
pub(crate) fn parse(source: &str) -> Result<Expr, QueryError> {
    let length = source.chars().count();
    if length > MAX_LENGTH {
        return Err(QueryError::new(
            QueryErrorKind::Limit,
            MAX_LENGTH + 1,
            format!("a query of at most {MAX_LENGTH} characters"),
            format!("a query of {length} characters"),
        ));
    }
    let tokens = tokenize(source);
    let mut parser = Parser { tokens, next: 0, depth: 0 };
    let expr = parser.or()?;
    let token = parser.peek();
    if token.token != Token::End {
        let expected = if token.token == Token::RParen {
            "\"and\", \"or\" or the end of the query (this \")\" closes no \"(\")"
        } else {
            "\"and\", \"or\" or the end of the query"
        };
        return Err(token.unexpected(QueryErrorKind::Syntax, expected));
    }
    Ok(expr)
}

/// The parser's state: the tokens, the index of the next one, and the current nesting depth.
struct Parser {
    tokens: Vec<Spanned>,
    /// Index of the next token to read.
    next: usize,
    /// Parentheses and `not`s currently open.
    depth: usize,
}

/// Is `token` the keyword `word` (which is given in lower case)?
fn is_keyword(token: &Token, word: &str) -> bool {
    matches!(token, Token::Ident(name) if name.eq_ignore_ascii_case(word))
}

/// Keywords that cannot start a field path.
const KEYWORDS: &[&str] = &["and", "or", "not", "in", "contains", "exists", "true", "false"];

impl Parser {
    fn peek(&self) -> &Spanned {
        // The token list always ends with `End`, and the parser never advances past it.
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> Spanned {
        let token = self.peek().clone();
        if token.token != Token::End {
            self.next += 1;
        }
        token
    }

    fn at_keyword(&self, word: &str) -> bool {
        is_keyword(&self.peek().token, word)
    }

    /// Enters one more level of nesting, failing at `position` beyond [`MAX_DEPTH`].
    fn enter(&mut self, position: usize) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(QueryError::new(
                QueryErrorKind::Limit,
                position,
                format!("at most {MAX_DEPTH} levels of nested parentheses and \"not\""),
                format!("level {}", self.depth),
            ));
        }
        Ok(())
    }

    /// `or_expr = and_expr , { "or" , and_expr }`
    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut items = Vec::new();
        loop {
            match self.and()? {
                Expr::Or(inner) => items.extend(inner),
                other => items.push(other),
            }
            if !self.at_keyword("or") {
                break;
            }
            self.advance();
        }
        Ok(if items.len() == 1 { items.remove(0) } else { Expr::Or(items) })
    }

    /// `and_expr = not_expr , { "and" , not_expr }`
    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut items = Vec::new();
        loop {
            match self.not()? {
                Expr::And(inner) => items.extend(inner),
                other => items.push(other),
            }
            if !self.at_keyword("and") {
                break;
            }
            self.advance();
        }
        Ok(if items.len() == 1 { items.remove(0) } else { Expr::And(items) })
    }

    /// `not_expr = "not" , not_expr | primary`
    fn not(&mut self) -> Result<Expr, QueryError> {
        if !self.at_keyword("not") {
            return self.primary();
        }
        let keyword = self.advance();
        self.enter(keyword.position)?;
        let inner = self.not()?;
        self.depth -= 1;
        Ok(Expr::Not(Box::new(inner)))
    }

    /// `primary = "(" , or_expr , ")" | "exists" , path | comparison`
    fn primary(&mut self) -> Result<Expr, QueryError> {
        let token = self.peek().clone();
        match &token.token {
            Token::LParen => {
                self.advance();
                self.enter(token.position)?;
                let inner = self.or()?;
                let close = self.peek();
                if close.token != Token::RParen {
                    let expected = format!("\"and\", \"or\" or \")\" to close the \"(\" at column {}", token.position);
                    return Err(close.unexpected(QueryErrorKind::Syntax, expected));
                }
                self.advance();
                self.depth -= 1;
                Ok(inner)
            }
            Token::Ident(word) if word.eq_ignore_ascii_case("exists") => {
                self.advance();
                let start = self.peek().clone();
                match &start.token {
                    Token::Ident(name) if !KEYWORDS.iter().any(|k| name.eq_ignore_ascii_case(k)) => {}
                    _ => {
                        return Err(start.unexpected(QueryErrorKind::Syntax, "a field name after \"exists\""));
                    }
                }
                let (path, _) = self.path()?;
                Ok(Expr::Exists(path))
            }
            Token::Ident(word) if !KEYWORDS.iter().any(|k| word.eq_ignore_ascii_case(k)) => self.comparison(),
            Token::Str(_) | Token::Number(_) => Err(token.unexpected(
                QueryErrorKind::Syntax,
                format!("{CONDITION}; a comparison starts with the field, as in `addresses contains \"10.0.0.5\"`"),
            )),
            _ => Err(token.unexpected(QueryErrorKind::Syntax, CONDITION)),
        }
    }

    /// Reads a path starting at the current identifier and walks the schema along it. Returns the path and the
    /// schema node it ends at.
    fn path(&mut self) -> Result<(Path, &'static Node), QueryError> {
        let mut segments = Vec::new();
        let mut rendered = String::new();
        let first = self.advance();
        let mut node = field(&first, ROOT, &mut rendered, &mut segments)?;
        loop {
            let next = self.peek().clone();
            match (node, &next.token) {
                (Node::Group(children), Token::Dot) => {
                    self.advance();
                    let name = self.advance();
                    node = field(&name, children, &mut rendered, &mut segments)?;
                }
                (Node::Map { key, entry }, Token::LBracket) => {
                    self.advance();
                    let token = self.advance();
                    let Token::Str(value) = &token.token else {
                        let expected = format!("the {key} in double quotes, as in `{rendered}[\"...\"]`");
                        return Err(token.unexpected(QueryErrorKind::Syntax, expected));
                    };
                    let close = self.advance();
                    if close.token != Token::RBracket {
                        return Err(close.unexpected(QueryErrorKind::Syntax, "\"]\""));
                    }
                    segments.push(Segment::Key(value.clone()));
                    rendered = Path(segments.clone()).to_string();
                    node = entry;
                }
                (Node::Leaf(field_type, _), Token::Dot | Token::LBracket) => {
                    let expected = format!(
                        "{COMPARISON_OPERATORS}; `{rendered}` is a {} and has no fields or keys",
                        field_type.name()
                    );
                    return Err(next.unexpected(QueryErrorKind::Type, expected));
                }
                (_, Token::Dot | Token::LBracket) => {
                    return Err(next.unexpected(QueryErrorKind::Type, node.continuation(&rendered)));
                }
                _ => return Ok((Path(segments), node)),
            }
        }
    }

    /// `comparison = path , ( compare_op , literal | "in" , list )`
    fn comparison(&mut self) -> Result<Expr, QueryError> {
        let (path, node) = self.path()?;
        let rendered = path.to_string();
        let token = self.peek().clone();
        let Node::Leaf(field_type, _) = node else {
            return Err(token.unexpected(QueryErrorKind::Type, node.continuation(&rendered)));
        };
        let field_type = *field_type;
        let op = match &token.token {
            Token::Eq => Some(CompareOp::Eq),
            Token::Ne => Some(CompareOp::Ne),
            Token::Lt => Some(CompareOp::Lt),
            Token::Le => Some(CompareOp::Le),
            Token::Gt => Some(CompareOp::Gt),
            Token::Ge => Some(CompareOp::Ge),
            Token::Tilde => Some(CompareOp::Glob),
            t if is_keyword(t, "contains") => Some(CompareOp::Contains),
            t if is_keyword(t, "in") => None,
            _ => return Err(token.unexpected(QueryErrorKind::Syntax, COMPARISON_OPERATORS)),
        };
        let applies = match (field_type, op) {
            (FieldType::StringList, op) => op == Some(CompareOp::Contains),
            (_, None | Some(CompareOp::Eq | CompareOp::Ne)) => true,
            (FieldType::Number, Some(CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge)) => true,
            (FieldType::String, Some(CompareOp::Glob | CompareOp::Contains)) => true,
            _ => false,
        };
        if !applies {
            return Err(token.unexpected(QueryErrorKind::Type, node.continuation(&rendered)));
        }
        self.advance();
        let Some(op) = op else {
            return Ok(Expr::In { values: self.list(field_type, &rendered)?, path });
        };
        let value = self.literal(field_type, &rendered)?;
        Ok(Expr::Compare { path, op, value })
    }

    /// `list = "[" , [ literal , { "," , literal } ] , "]"`
    fn list(&mut self, field_type: FieldType, rendered: &str) -> Result<Vec<Literal>, QueryError> {
        let open = self.advance();
        if open.token != Token::LBracket {
            let expected = format!("\"[\" and a list of values after \"in\", as in `{rendered} in [...]`");
            return Err(open.unexpected(QueryErrorKind::Syntax, expected));
        }
        let mut values = Vec::new();
        if self.peek().token == Token::RBracket {
            self.advance();
            return Ok(values);
        }
        loop {
            values.push(self.literal(field_type, rendered)?);
            let separator = self.advance();
            match separator.token {
                Token::Comma => {}
                Token::RBracket => return Ok(values),
                _ => return Err(separator.unexpected(QueryErrorKind::Syntax, "\",\" or \"]\"")),
            }
        }
    }

    /// `literal = string | number | "true" | "false"`, of the type of the field it is compared with.
    fn literal(&mut self, field_type: FieldType, rendered: &str) -> Result<Literal, QueryError> {
        let token = self.advance();
        let literal = match &token.token {
            Token::Str(s) => Some(Literal::String(s.clone())),
            Token::Number(n) => Some(Literal::Number(*n)),
            t if is_keyword(t, "true") => Some(Literal::Bool(true)),
            t if is_keyword(t, "false") => Some(Literal::Bool(false)),
            _ => None,
        };
        let wanted = match field_type {
            FieldType::String | FieldType::StringList => "a string in double quotes",
            FieldType::Number => "a number",
            FieldType::Bool => "true or false",
        };
        let fits = matches!(
            (&literal, field_type),
            (Some(Literal::String(_)), FieldType::String | FieldType::StringList)
                | (Some(Literal::Number(_)), FieldType::Number)
                | (Some(Literal::Bool(_)), FieldType::Bool)
        );
        match literal {
            Some(literal) if fits => Ok(literal),
            Some(_) => {
                let mut expected = format!("{wanted}, because `{rendered}` is a {}", field_type.name());
                if matches!(field_type, FieldType::String | FieldType::StringList) {
                    expected.push_str(&format!(" (write \"{}\")", token.text));
                }
                Err(token.unexpected(QueryErrorKind::Type, expected))
            }
            None => {
                let mut expected = wanted.to_owned();
                if matches!(field_type, FieldType::String | FieldType::StringList)
                    && matches!(token.token, Token::Ident(_))
                {
                    expected.push_str(&format!(" (write \"{}\")", token.text));
                }
                Err(token.unexpected(QueryErrorKind::Syntax, expected))
            }
        }
    }
}

/// Resolves the field name in `token` among `children`, the fields of the group that `rendered` (the path so far)
/// names, and appends it to the path.
fn field(
    token: &Spanned,
    children: &'static [Field],
    rendered: &mut String,
    segments: &mut Vec<Segment>,
) -> Result<&'static Node, QueryError> {
    let Token::Ident(name) = &token.token else {
        return Err(token.unexpected(QueryErrorKind::Syntax, "a field name after \".\""));
    };
    let Some(child) = children.iter().find(|field| field.name == name.as_str()) else {
        let written = if rendered.is_empty() { name.clone() } else { format!("{rendered}.{name}") };
        let names = children.iter().map(|field| field.name).collect::<Vec<_>>().join(", ");
        let expected = if rendered.is_empty() {
            format!("one of the top-level fields ({names})")
        } else {
            format!("one of the fields of `{rendered}` ({names})")
        };
        let mut error = QueryError::new(QueryErrorKind::UnknownField, token.position, expected, format!("`{written}`"));
        error.suggestion = suggest(rendered, name, children);
        return Err(error);
    };
    if !rendered.is_empty() {
        rendered.push('.');
    }
    rendered.push_str(name);
    segments.push(Segment::Field(name.clone()));
    Ok(&child.node)
}
