//! The experiment filter language, e.g. `lr < 0.01 and tag:baseline and acc >= 0.9`.
//!
//! ```text
//! query   := or
//! or      := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | primary
//! primary := "(" or ")"
//!          | "tag:" WORD                      experiments with that tag (case-insensitive)
//!          | "state:" STATE                   running, finished, failed or crashed
//!          | "group:" (WORD | STRING)         experiments in that group (case-insensitive)
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
//!
//! A query is client input that shapes a tree, and every walk over it (parse, compile, drop)
//! recurses, and Rust aborts the process on stack overflow. So a query is bounded three ways
//! before it becomes a tree: [`MAX_CHARS`] long, [`MAX_DEPTH`] levels of `(` and `not`, and
//! [`MAX_CONDITIONS`] conditions; chains of `and`/`or` are flat lists, not nested pairs, so they
//! add no depth.

use crate::error::{Error, Result};
use crate::run_state::RunState;

/// The longest query, in characters.
pub const MAX_CHARS: usize = 2_000;
/// How deep parentheses and `not` may nest.
pub const MAX_DEPTH: usize = 32;
/// The most conditions (comparisons, tags, words) in one query.
pub const MAX_CONDITIONS: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Two or more terms, all true.
    And(Vec<Expr>),
    /// Two or more terms, any true.
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Tag(String),
    /// Runs in this group, ignoring ASCII case.
    Group(String),
    /// Runs in this state now (`run_state`).
    State(RunState),
    NameContains(String),
    Compare {
        field: Field,
        op: Op,
        value: Value,
    },
    /// A run name matching an SQL LIKE pattern (`ci`: ignoring case); from MLflow's search.
    NameLike {
        pattern: String,
        ci: bool,
    },
    /// A hyperparameter whose value, as text, is (`equal`) or is not `value`: MLflow's params
    /// are strings, so `params.lr = '0.1'` matches a number 0.1 too.
    ParamText {
        key: String,
        value: String,
        equal: bool,
    },
    /// A text hyperparameter matching an SQL LIKE pattern; from MLflow's search.
    ParamLike {
        key: String,
        pattern: String,
        ci: bool,
    },
    /// An MLflow tag (kept in the run's metadata under `mlflow_tags`) with this value.
    MetaTag {
        key: String,
        value: String,
    },
    /// An MLflow tag whose value matches an SQL LIKE pattern.
    MetaTagLike {
        key: String,
        pattern: String,
        ci: bool,
    },
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

/// Parses a query; errors name the column (1-based) where it went wrong, or the limit it broke.
pub fn parse(input: &str) -> Result<Expr> {
    let len = input.chars().count();
    if len > MAX_CHARS {
        return Err(Error::bad_request(format!(
            "q is {len} characters long; the limit is {MAX_CHARS}"
        )));
    }
    let tokens = lex(input)?;
    let mut p = Parser {
        tokens,
        at: 0,
        len,
        depth: 0,
        conditions: 0,
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
    /// Open parentheses and `not`s around the current position.
    depth: usize,
    conditions: usize,
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
        let mut terms = vec![self.and()?];
        while self.keyword("or") {
            self.at += 1;
            terms.push(self.and()?);
        }
        Ok(match terms.len() {
            1 => terms.remove(0),
            _ => Expr::Or(terms),
        })
    }

    fn and(&mut self) -> Result<Expr> {
        let mut terms = vec![self.unary()?];
        while self.keyword("and") {
            self.at += 1;
            terms.push(self.unary()?);
        }
        Ok(match terms.len() {
            1 => terms.remove(0),
            _ => Expr::And(terms),
        })
    }

    /// Enters one level of `(` or `not`, refusing past [`MAX_DEPTH`] before recursing.
    fn deeper(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(&format!(
                "parentheses and 'not' nest deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr> {
        if self.keyword("not") {
            self.deeper()?;
            self.at += 1;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        if self.peek() != Some(&Tok::Open) {
            self.conditions += 1;
            if self.conditions > MAX_CONDITIONS {
                return Err(self.error(&format!(
                    "more than {MAX_CONDITIONS} conditions in one query"
                )));
            }
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr> {
        match self.peek().cloned() {
            Some(Tok::Open) => {
                self.deeper()?;
                self.at += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(self.error("expected ')'"));
                }
                self.at += 1;
                self.depth -= 1;
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
            Some(Tok::Word(w))
                if w.eq_ignore_ascii_case("group")
                    && self.tokens.get(self.at + 1).map(|t| &t.0) == Some(&Tok::Colon) =>
            {
                self.at += 2;
                match self.peek().cloned() {
                    Some(Tok::Word(g)) | Some(Tok::Str(g)) | Some(Tok::Num(_, g)) => {
                        self.at += 1;
                        Ok(Expr::Group(g))
                    }
                    _ => Err(self.error(
                        "expected a group after 'group:' (in double quotes if it has spaces)",
                    )),
                }
            }
            Some(Tok::Word(w))
                if w.eq_ignore_ascii_case("state")
                    && self.tokens.get(self.at + 1).map(|t| &t.0) == Some(&Tok::Colon) =>
            {
                self.at += 2;
                let state = match self.peek() {
                    Some(Tok::Word(s) | Tok::Str(s)) => RunState::parse(s),
                    _ => None,
                };
                match state {
                    Some(s) => {
                        self.at += 1;
                        Ok(Expr::State(s))
                    }
                    None => {
                        let words: Vec<&str> = RunState::ALL.iter().map(|s| s.as_str()).collect();
                        let (last, rest) = words.split_last().unwrap_or((&"", &[]));
                        Err(self.error(&format!("'state:' takes {} or {last}", rest.join(", "))))
                    }
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

/// A sort order for experiment lists: `created`, `-created`, `name`, `group`, `hp.lr`,
/// `-result.acc`, ...
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
    /// The group's name, ignoring case; runs in no group last.
    Group,
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
        _ if name == "group" => SortKey::Group,
        Field::Name => SortKey::Name,
        Field::Hyperparam(k) => SortKey::Hyperparam(k),
        Field::Result(k) => SortKey::Result(k),
        Field::Metric(k) => SortKey::Metric(k),
        Field::Any(_) => {
            return Err(Error::bad_request(format!(
                "sort must be created, updated, name, group, hp.KEY, result.NAME or metric.NAME (with '-' for descending), not '{raw}'"
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
            Expr::And(vec![
                cmp(Field::Any("lr".into()), Op::Lt, Value::Number(0.01)),
                Expr::Tag("baseline".into()),
                cmp(Field::Any("acc".into()), Op::Ge, Value::Number(0.9)),
            ])
        );
    }

    #[test]
    fn precedence_parentheses_not_and_prefixes() {
        let e = parse("not (hp.opt = adam or result.f1 != 1e-3) and resnet").unwrap();
        let inner = Expr::Or(vec![
            cmp(
                Field::Hyperparam("opt".into()),
                Op::Eq,
                Value::Text("adam".into()),
            ),
            cmp(Field::Result("f1".into()), Op::Ne, Value::Number(1e-3)),
        ]);
        assert_eq!(
            e,
            Expr::And(vec![
                Expr::Not(Box::new(inner)),
                Expr::NameContains("resnet".into())
            ])
        );
        assert_eq!(
            parse(r#"name ~ "res \"net\"" OR metric.loss <= -2"#).unwrap(),
            Expr::Or(vec![
                cmp(Field::Name, Op::Contains, Value::Text("res \"net\"".into())),
                cmp(Field::Metric("loss".into()), Op::Le, Value::Number(-2.0))
            ])
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
            ("group:", 7, "expected a group after 'group:'"),
            ("group:(a)", 7, "expected a group"),
            ("name = \"open", 8, "unterminated string"),
            ("lr ! 3", 4, "'!' must be followed by '='"),
            ("lr < 0.1 and or", 14, "unexpected 'or'"),
            ("a & b", 3, "unexpected '&'"),
            (
                "state:",
                7,
                "'state:' takes running, finished, failed or crashed",
            ),
            (
                "state:done",
                7,
                "'state:' takes running, finished, failed or crashed",
            ),
            ("lr < 1 and state:live", 18, "'state:' takes running"),
        ] {
            let msg = parse(q).unwrap_err().to_string();
            assert!(
                msg.contains(what) && msg.contains(&format!("column {col}")),
                "{q}: {msg}"
            );
        }
    }

    /// The tree's depth, counted without recursion (the thing the limits protect).
    fn depth(e: &Expr) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(e, 1)];
        while let Some((e, d)) = stack.pop() {
            deepest = deepest.max(d);
            match e {
                Expr::And(terms) | Expr::Or(terms) => {
                    stack.extend(terms.iter().map(|t| (t, d + 1)))
                }
                Expr::Not(inner) => stack.push((inner, d + 1)),
                _ => {}
            }
        }
        deepest
    }

    #[test]
    fn queries_at_the_limits_parse_and_past_them_are_refused_by_name() {
        let nested = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        let nots = |n: usize| format!("{}a", "not ".repeat(n));
        let flat = |n: usize| vec!["a"; n].join(" or ");
        assert!(parse(&nested(MAX_DEPTH)).is_ok());
        assert!(parse(&nots(MAX_DEPTH)).is_ok());
        let wide = parse(&flat(MAX_CONDITIONS)).unwrap();
        assert_eq!(depth(&wide), 2, "a chain of 'or' is one flat list");
        let mixed = (0..MAX_CONDITIONS / 2)
            .map(|i| format!("a{i} and b{i}"))
            .collect::<Vec<_>>()
            .join(" or ");
        assert_eq!(depth(&parse(&mixed).unwrap()), 3);

        for (q, says) in [
            (nested(MAX_DEPTH + 1), "nest deeper than 32"),
            (nested(500), "nest deeper than 32"),
            (nested(2_400), "is 4801 characters long"),
            (nots(MAX_DEPTH + 1), "nest deeper than 32"),
            (nots(5_000), "is 20001 characters long"),
            (flat(MAX_CONDITIONS + 1), "more than 100 conditions"),
            (flat(1_100), "is 5496 characters long"),
            (format!("{} a", "x".repeat(MAX_CHARS)), "the limit is 2000"),
        ] {
            let msg = parse(&q).unwrap_err().to_string();
            assert!(msg.starts_with("BAD_REQUEST: q"), "{msg}");
            assert!(msg.contains(says), "{}...: {msg}", &q[..20]);
        }
    }

    #[test]
    fn state_conditions_name_one_of_the_four_states() {
        assert_eq!(
            parse("state:running").unwrap(),
            Expr::State(RunState::Running)
        );
        assert_eq!(
            parse("not STATE:Crashed or state:\"failed\"").unwrap(),
            Expr::Or(vec![
                Expr::Not(Box::new(Expr::State(RunState::Crashed))),
                Expr::State(RunState::Failed)
            ])
        );
        // Without the colon it is what it was: a hyperparameter or result named "state".
        assert_eq!(
            parse("state = finished").unwrap(),
            cmp(
                Field::Any("state".into()),
                Op::Eq,
                Value::Text("finished".into())
            )
        );
    }

    #[test]
    fn group_conditions_take_a_word_a_quoted_name_or_a_number() {
        assert_eq!(
            parse("group:sweep-lr/2").unwrap(),
            Expr::Group("sweep-lr/2".into())
        );
        assert_eq!(
            parse(r#"GROUP:"cv folds" and not group:2026"#).unwrap(),
            Expr::And(vec![
                Expr::Group("cv folds".into()),
                Expr::Not(Box::new(Expr::Group("2026".into())))
            ])
        );
        // Without the colon it is what it was: a hyperparameter or result named "group".
        assert_eq!(
            parse("group = a").unwrap(),
            cmp(Field::Any("group".into()), Op::Eq, Value::Text("a".into()))
        );
        assert_eq!(parse("group").unwrap(), Expr::NameContains("group".into()));
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
        assert_eq!(parse_sort("-group").unwrap().key, SortKey::Group);
        assert!(parse_sort("lr").is_err());
    }
}
