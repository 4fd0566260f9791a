//! The experiment filter language, e.g. `lr < 0.01 and tag:baseline and acc >= 0.9`.
//!
//! ```text
//! query   := or
//! or      := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | primary
//! primary := "(" or ")"
//!          | "tag:" WORD                      experiments with that tag (case-insensitive)
//!          | FIELD OP VALUE                   compare a field
//!          | WORD | STRING                    the name contains it (case-insensitive)
//! FIELD   := "name" | "hp." KEY | "result." NAME | "metric." NAME | KEY
//!            (a bare KEY matches a hyperparameter or a result of that name;
//!             metric.NAME compares the metric's last value)
//! OP      := "<" | "<=" | ">" | ">=" | "=" | "!=" | "~"   (~ : contains)
//! VALUE   := NUMBER | WORD | STRING                ("true"/"false" are 1/0)
//! ```
//! Keywords are case-insensitive; WORD is letters, digits and `_ - . /`; STRING is in double
//! quotes with `\"` for a quote. Parsing is pure: `store::experiments` turns the tree into SQL.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Tag(String),
    NameContains(String),
    Compare { field: Field, op: Op, value: Value },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Name,
    Hyperparam(String),
    Result(String),
    Metric(String),
    /// A hyperparameter or a result with this name.
    Any(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    /// A number, with its text (a tag may look like one).
    Num(f64, String),
    Op(Op),
    Open,
    Close,
    Colon,
}

/// Parses a query; errors name the column (1-based) where it went wrong.
pub fn parse(input: &str) -> Result<Expr> {
    let tokens = lex(input)?;
    let mut p = Parser {
        tokens,
        at: 0,
        len: input.chars().count(),
    };
    let expr = p.or()?;
    match p.peek() {
        None => Ok(expr),
        Some(_) => Err(p.error("expected 'and', 'or' or the end of the query")),
    }
}

fn lex(input: &str) -> Result<Vec<(Tok, usize)>> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |col: usize, msg: &str| Error::bad_request(format!("q: {msg} at column {}", col + 1));
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '(' => {
                i += 1;
                Tok::Open
            }
            ')' => {
                i += 1;
                Tok::Close
            }
            ':' => {
                i += 1;
                Tok::Colon
            }
            '<' | '>' | '=' | '!' | '~' => {
                let next = chars.get(i + 1).copied();
                let (op, width) = match (c, next) {
                    ('<', Some('=')) => (Op::Le, 2),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('=', Some('=')) => (Op::Eq, 2),
                    ('<', _) => (Op::Lt, 1),
                    ('>', _) => (Op::Gt, 1),
                    ('=', _) => (Op::Eq, 1),
                    ('~', _) => (Op::Contains, 1),
                    _ => return Err(err(i, "'!' must be followed by '='")),
                };
                i += width;
                Tok::Op(op)
            }
            '"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err(err(start, "unterminated string")),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') if chars.get(i + 1) == Some(&'"') => {
                            s.push('"');
                            i += 2;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                Tok::Str(s)
            }
            c if is_word_char(c)
                || ((c == '-' || c == '+')
                    && chars
                        .get(i + 1)
                        .is_some_and(|d| d.is_ascii_digit() || *d == '.')) =>
            {
                i += 1;
                while i < chars.len() && (is_word_char(chars[i]) || exponent_sign(&chars, i)) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                match word.parse::<f64>() {
                    Ok(n) if n.is_finite() && !word.chars().all(|c| c.is_alphabetic()) => {
                        Tok::Num(n, word)
                    }
                    _ => Tok::Word(word),
                }
            }
            _ => return Err(err(i, &format!("unexpected '{c}'"))),
        };
        out.push((tok, start));
    }
    Ok(out)
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// `1e-3`: a sign right after an exponent marker belongs to the number.
fn exponent_sign(chars: &[char], i: usize) -> bool {
    matches!(chars[i], '-' | '+')
        && i > 0
        && matches!(chars[i - 1], 'e' | 'E')
        && i > 1
        && chars[i - 2].is_ascii_digit()
}

struct Parser {
    tokens: Vec<(Tok, usize)>,
    at: usize,
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|(t, _)| t)
    }

    fn column(&self) -> usize {
        self.tokens.get(self.at).map_or(self.len, |(_, c)| *c) + 1
    }

    fn error(&self, msg: &str) -> Error {
        Error::bad_request(format!("q: {msg} at column {}", self.column()))
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    fn or(&mut self) -> Result<Expr> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr> {
        if self.keyword("not") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr> {
        match self.peek().cloned() {
            Some(Tok::Open) => {
                self.at += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(self.error("expected ')'"));
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Tok::Word(w))
                if w.eq_ignore_ascii_case("tag")
                    && self.tokens.get(self.at + 1).map(|t| &t.0) == Some(&Tok::Colon) =>
            {
                self.at += 2;
                match self.peek().cloned() {
                    Some(Tok::Word(t)) | Some(Tok::Str(t)) | Some(Tok::Num(_, t)) => {
                        self.at += 1;
                        Ok(Expr::Tag(t))
                    }
                    _ => Err(self.error("expected a tag after 'tag:'")),
                }
            }
            Some(Tok::Word(w)) => {
                if ["and", "or", "not"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k))
                {
                    return Err(self.error(&format!("unexpected '{w}'")));
                }
                self.at += 1;
                match self.peek().cloned() {
                    Some(Tok::Op(op)) => {
                        self.at += 1;
                        let value = self.value()?;
                        Ok(Expr::Compare {
                            field: field(&w),
                            op,
                            value,
                        })
                    }
                    _ => Ok(Expr::NameContains(w)),
                }
            }
            Some(Tok::Str(s)) => {
                self.at += 1;
                Ok(Expr::NameContains(s))
            }
            Some(Tok::Num(..)) => Err(self.error("expected a field or a word, not a number")),
            Some(Tok::Op(_)) => Err(self.error("expected a field before the operator")),
            Some(Tok::Close) => Err(self.error("unexpected ')'")),
            Some(Tok::Colon) => Err(self.error("unexpected ':'")),
            None => Err(self.error("expected a condition")),
        }
    }

    fn value(&mut self) -> Result<Value> {
        let v = match self.peek().cloned() {
            Some(Tok::Num(n, _)) => Value::Number(n),
            Some(Tok::Str(s)) => Value::Text(s),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Value::Number(1.0),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Value::Number(0.0),
            Some(Tok::Word(w))
                if !["and", "or", "not"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                Value::Text(w)
            }
            _ => return Err(self.error("expected a value")),
        };
        self.at += 1;
        Ok(v)
    }
}

fn field(word: &str) -> Field {
    if word.eq_ignore_ascii_case("name") {
        return Field::Name;
    }
    for (prefix, make) in [
        ("hp.", Field::Hyperparam as fn(String) -> Field),
        ("result.", Field::Result),
        ("metric.", Field::Metric),
    ] {
        if let Some(rest) = word.strip_prefix(prefix)
            && !rest.is_empty()
        {
            return make(rest.to_string());
        }
    }
    Field::Any(word.to_string())
}

/// A sort order for experiment lists: `created`, `-created`, `name`, `hp.lr`, `-result.acc`, ...
#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    Created,
    Updated,
    Name,
    Hyperparam(String),
    Result(String),
    Metric(String),
}

pub fn parse_sort(raw: &str) -> Result<Sort> {
    let raw = raw.trim();
    let (descending, name) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw.strip_prefix('+').unwrap_or(raw)),
    };
    let key = match field(name) {
        _ if name == "created" => SortKey::Created,
        _ if name == "updated" => SortKey::Updated,
        Field::Name => SortKey::Name,
        Field::Hyperparam(k) => SortKey::Hyperparam(k),
        Field::Result(k) => SortKey::Result(k),
        Field::Metric(k) => SortKey::Metric(k),
        Field::Any(_) => {
            return Err(Error::bad_request(format!(
                "sort must be created, updated, name, hp.KEY, result.NAME or metric.NAME (with '-' for descending), not '{raw}'"
            )));
        }
    };
    Ok(Sort { key, descending })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(field: Field, op: Op, value: Value) -> Expr {
        Expr::Compare { field, op, value }
    }

    #[test]
    fn the_example_from_the_docs_parses() {
        let e = parse("lr < 0.01 and tag:baseline and acc >= 0.9").unwrap();
        assert_eq!(
            e,
            Expr::And(
                Box::new(Expr::And(
                    Box::new(cmp(Field::Any("lr".into()), Op::Lt, Value::Number(0.01))),
                    Box::new(Expr::Tag("baseline".into()))
                )),
                Box::new(cmp(Field::Any("acc".into()), Op::Ge, Value::Number(0.9)))
            )
        );
    }

    #[test]
    fn precedence_parentheses_not_and_prefixes() {
        let e = parse("not (hp.opt = adam or result.f1 != 1e-3) and resnet").unwrap();
        let inner = Expr::Or(
            Box::new(cmp(
                Field::Hyperparam("opt".into()),
                Op::Eq,
                Value::Text("adam".into()),
            )),
            Box::new(cmp(Field::Result("f1".into()), Op::Ne, Value::Number(1e-3))),
        );
        assert_eq!(
            e,
            Expr::And(
                Box::new(Expr::Not(Box::new(inner))),
                Box::new(Expr::NameContains("resnet".into()))
            )
        );
        assert_eq!(
            parse(r#"name ~ "res \"net\"" OR metric.loss <= -2"#).unwrap(),
            Expr::Or(
                Box::new(cmp(
                    Field::Name,
                    Op::Contains,
                    Value::Text("res \"net\"".into())
                )),
                Box::new(cmp(
                    Field::Metric("loss".into()),
                    Op::Le,
                    Value::Number(-2.0)
                ))
            )
        );
        assert_eq!(
            parse("augment = true").unwrap(),
            cmp(Field::Any("augment".into()), Op::Eq, Value::Number(1.0))
        );
    }

    #[test]
    fn malformed_queries_point_at_the_error() {
        for (q, col, what) in [
            ("lr <", 5, "expected a value"),
            ("lr < and acc", 6, "expected a value"),
            ("lr < 0.1 and", 13, "expected a condition"),
            ("(lr < 0.1", 10, "expected ')'"),
            ("lr < 0.1 acc > 2", 10, "expected 'and', 'or'"),
            ("< 3", 1, "expected a field"),
            ("tag:", 5, "expected a tag"),
            ("name = \"open", 8, "unterminated string"),
            ("lr ! 3", 4, "'!' must be followed by '='"),
            ("lr < 0.1 and or", 14, "unexpected 'or'"),
            ("a & b", 3, "unexpected '&'"),
        ] {
            let msg = parse(q).unwrap_err().to_string();
            assert!(
                msg.contains(what) && msg.contains(&format!("column {col}")),
                "{q}: {msg}"
            );
        }
    }

    #[test]
    fn sorts_parse_with_direction() {
        assert_eq!(
            parse_sort("-created").unwrap(),
            Sort {
                key: SortKey::Created,
                descending: true
            }
        );
        assert_eq!(
            parse_sort("hp.lr").unwrap(),
            Sort {
                key: SortKey::Hyperparam("lr".into()),
                descending: false
            }
        );
        assert_eq!(
            parse_sort("-result.acc").unwrap().key,
            SortKey::Result("acc".into())
        );
        assert!(parse_sort("lr").is_err());
    }
}
