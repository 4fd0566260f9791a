//! MLflow's run search syntax (`params.lr = '0.01' and metrics.acc > 0.9`), parsed into the
//! [`crate::query::Expr`] Tora's own filters compile from, and its `order_by` into a
//! [`crate::query::Sort`]. Bounded like `query`: length and number of conditions.

use crate::error::{Error, Result};
use crate::query::{Expr, Field, MAX_CHARS, MAX_CONDITIONS, Op, Sort, SortKey, Value};
use crate::run_state::RunState;

/// The text of a single- or double-quoted string that is the whole of `raw`.
pub fn quoted(raw: &str) -> Option<String> {
    let q = raw.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = raw.strip_prefix(q)?.strip_suffix(q)?;
    (!inner.contains(q)).then(|| inner.to_string())
}

/// SQL LIKE: `%` any run of characters, `_` any one; `ci` ignores case.
pub fn like(pattern: &str, text: &str, ci: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if ci {
        (
            pattern.to_lowercase().chars().collect(),
            text.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    // Iterative matching with one backtrack point: linear in practice, never recursive.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < p.len() && (p[i] == '_' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '%' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    while i < p.len() && p[i] == '%' {
        i += 1;
    }
    i == p.len()
}

fn bad(msg: impl Into<String>) -> Error {
    Error::bad_request(msg.into())
}

/// Splits `input` on ` and ` outside quotes (MLflow's search has no `or`).
fn clauses(input: &str) -> Result<Vec<String>> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' || c == '`' => quote = Some(c),
            None if c.is_whitespace() => {
                let rest: String = chars[i..].iter().take(5).collect();
                if rest.len() == 5
                    && rest[1..4].eq_ignore_ascii_case("and")
                    && rest.chars().nth(4).is_some_and(char::is_whitespace)
                {
                    out.push(std::mem::take(&mut cur));
                    i += 5;
                    continue;
                }
            }
            None => {}
        }
        cur.push(c);
        i += 1;
    }
    if quote.is_some() {
        return Err(bad("the filter has an unclosed quote"));
    }
    out.push(cur);
    Ok(out
        .into_iter()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect())
}

/// `params.lr`, `metrics."val loss"`, `` tags.`x` ``, `attributes.status`, `status`: the
/// entity and the key.
fn identifier(raw: &str) -> Result<(String, String)> {
    let (entity, key) = match raw.split_once('.') {
        Some((e, k)) => (e.trim().to_ascii_lowercase(), k.trim()),
        None => ("attributes".to_string(), raw.trim()),
    };
    let key = match key.chars().next() {
        Some(q @ ('"' | '`' | '\'')) => key
            .strip_prefix(q)
            .and_then(|k| k.strip_suffix(q))
            .ok_or_else(|| bad(format!("bad key {key}")))?
            .to_string(),
        _ => key.to_string(),
    };
    let entity = match entity.as_str() {
        "param" | "params" | "parameter" | "parameters" => "params",
        "metric" | "metrics" => "metrics",
        "tag" | "tags" => "tags",
        "attribute" | "attributes" | "attr" | "run" => "attributes",
        other => return Err(bad(format!("unknown entity '{other}' in the filter"))),
    };
    Ok((entity.to_string(), key))
}

/// One comparison: `<identifier> <op> <value>`.
fn clause(c: &str) -> Result<Expr> {
    const OPS: [&str; 9] = ["!=", "<=", ">=", "=", "<", ">", " ilike ", " like ", " in "];
    let lower = c.to_ascii_lowercase();
    // The first operator outside the identifier (quoted keys may hold anything).
    let start = match c.chars().next() {
        Some(_) => {
            let after_dot = c.find('.').map(|d| d + 1).unwrap_or(0);
            match c[after_dot..].chars().next() {
                Some(q @ ('"' | '`')) => c[after_dot + 1..]
                    .find(q)
                    .map(|e| after_dot + e + 2)
                    .unwrap_or(0),
                _ => 0,
            }
        }
        None => 0,
    };
    let (at, op) = OPS
        .iter()
        .filter_map(|op| lower[start..].find(op).map(|i| (start + i, *op)))
        .min_by_key(|(i, op)| (*i, std::cmp::Reverse(op.len())))
        .ok_or_else(|| bad(format!("no comparison in '{c}'")))?;
    let (entity, key) = identifier(&c[..at])?;
    let raw_value = c[at + op.len()..].trim();
    let op = op.trim();
    let text = quoted(raw_value);
    let number = raw_value.parse::<f64>().ok();
    let cmp = |o: &str| -> Result<Op> {
        Ok(match o {
            "=" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            other => return Err(bad(format!("'{other}' is not supported here"))),
        })
    };
    match entity.as_str() {
        "metrics" => {
            let value = number.ok_or_else(|| bad(format!("metrics.{key} needs a number")))?;
            Ok(Expr::Compare {
                field: Field::Metric(key),
                op: cmp(op)?,
                value: Value::Number(value),
            })
        }
        "params" => {
            let value = text.ok_or_else(|| bad(format!("params.{key} needs a quoted string")))?;
            match op {
                "like" | "ilike" => Ok(Expr::ParamLike {
                    key,
                    pattern: value,
                    ci: op == "ilike",
                }),
                "=" | "!=" => Ok(Expr::Compare {
                    field: Field::Hyperparam(key),
                    op: cmp(op)?,
                    value: Value::Text(value),
                }),
                other => Err(bad(format!(
                    "params compare with = != LIKE ILIKE, not {other}"
                ))),
            }
        }
        // The run name is no tag in Tora, but MLflow filters on it as one.
        "tags" if key == "mlflow.runName" => clause(&format!(
            "attributes.run_name {op} {raw_value}",
            op = op.trim()
        )),
        "tags" => {
            let value = text.ok_or_else(|| bad(format!("tags.{key} needs a quoted string")))?;
            let positive = match op {
                "=" => true,
                "!=" => false,
                "like" | "ilike" => {
                    return Ok(Expr::MetaTagLike {
                        key,
                        pattern: value,
                        ci: op == "ilike",
                    });
                }
                other => {
                    return Err(bad(format!(
                        "tags compare with = != LIKE ILIKE, not {other}"
                    )));
                }
            };
            let e = Expr::MetaTag { key, value };
            Ok(if positive { e } else { Expr::Not(Box::new(e)) })
        }
        _ => match key.to_ascii_lowercase().as_str() {
            "status" => {
                let value = text.ok_or_else(|| bad("attributes.status needs a quoted string"))?;
                let states: Vec<Expr> = match value.to_ascii_uppercase().as_str() {
                    "RUNNING" => vec![Expr::State(RunState::Running)],
                    "FINISHED" => vec![Expr::State(RunState::Finished)],
                    "FAILED" | "KILLED" => vec![
                        Expr::State(RunState::Failed),
                        Expr::State(RunState::Crashed),
                    ],
                    "SCHEDULED" => vec![],
                    other => return Err(bad(format!("unknown status '{other}'"))),
                };
                let any = match states.len() {
                    0 => Expr::Or(vec![]),
                    1 => states.into_iter().next().unwrap_or(Expr::Or(vec![])),
                    _ => Expr::Or(states),
                };
                match op {
                    "=" => Ok(any),
                    "!=" => Ok(Expr::Not(Box::new(any))),
                    other => Err(bad(format!(
                        "attributes.status compares with = or !=, not {other}"
                    ))),
                }
            }
            "run_name" | "name" => {
                let value = text.ok_or_else(|| bad("attributes.run_name needs a quoted string"))?;
                match op {
                    "like" | "ilike" => Ok(Expr::NameLike {
                        pattern: value,
                        ci: op == "ilike",
                    }),
                    "=" | "!=" => Ok(Expr::Compare {
                        field: Field::Name,
                        op: cmp(op)?,
                        value: Value::Text(value),
                    }),
                    other => Err(bad(format!(
                        "attributes.run_name compares with = != LIKE ILIKE, not {other}"
                    ))),
                }
            }
            other => Err(bad(format!(
                "Tora's MLflow search filters on params, metrics, tags, attributes.status and attributes.run_name, not attributes.{other}"
            ))),
        },
    }
}

/// A run filter. The empty string is no filter.
pub fn parse(input: &str) -> Result<Option<Expr>> {
    let len = input.chars().count();
    if len > MAX_CHARS {
        return Err(bad(format!(
            "the filter is {len} characters long; the limit is {MAX_CHARS}"
        )));
    }
    let parts = clauses(input)?;
    if parts.len() > MAX_CONDITIONS {
        return Err(bad(format!(
            "the filter has {} conditions; the limit is {MAX_CONDITIONS}",
            parts.len()
        )));
    }
    let mut terms = parts
        .iter()
        .map(|c| clause(c))
        .collect::<Result<Vec<_>>>()?;
    Ok(match terms.len() {
        0 => None,
        1 => terms.pop(),
        _ => Some(Expr::And(terms)),
    })
}

/// The first of MLflow's `order_by` terms (`metrics.acc DESC`, `params.lr`,
/// `attributes.start_time`); none is MLflow's default, newest first.
pub fn parse_order(order_by: &[String]) -> Result<Sort> {
    let Some(first) = order_by.first() else {
        return Ok(Sort {
            key: SortKey::Created,
            descending: true,
        });
    };
    if order_by.len() > 1 {
        return Err(bad("Tora orders runs by one key; give one order_by term"));
    }
    let raw = first.trim();
    let (ident, descending) = match raw.rsplit_once(char::is_whitespace) {
        Some((i, d)) if d.eq_ignore_ascii_case("desc") => (i, true),
        Some((i, d)) if d.eq_ignore_ascii_case("asc") => (i, false),
        _ => (raw, false),
    };
    let (entity, key) = identifier(ident)?;
    let key = match entity.as_str() {
        "metrics" => SortKey::Metric(key),
        "params" => SortKey::Hyperparam(key),
        "attributes" => match key.as_str() {
            "start_time" | "created" => SortKey::Created,
            "run_name" | "name" => SortKey::Name,
            other => return Err(bad(format!("Tora cannot order runs by attributes.{other}"))),
        },
        _ => return Err(bad("Tora cannot order runs by tags")),
    };
    Ok(Sort { key, descending })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlflow_filters_become_tora_expressions() {
        let e = parse("params.lr = '0.01' and metrics.acc > 0.9 and tags.x = 'y' and attributes.status = 'FINISHED'")
            .unwrap()
            .unwrap();
        let Expr::And(terms) = e else { panic!("{e:?}") };
        assert_eq!(terms.len(), 4);
        assert_eq!(
            terms[1],
            Expr::Compare {
                field: Field::Metric("acc".into()),
                op: Op::Gt,
                value: Value::Number(0.9)
            }
        );
        assert!(parse("").unwrap().is_none());
        assert!(parse("attributes.run_name LIKE '%x%'").unwrap().is_some());
        assert!(parse("params.lr > 'a'").is_err());
        assert!(parse("metrics.acc > 'a'").is_err());
        assert!(parse(&"params.a = 'b' and ".repeat(200)).is_err());
        assert!(parse("params.a = 'b").is_err());
        assert_eq!(
            parse("params.\"a = b\" = 'x'").unwrap(),
            Some(Expr::Compare {
                field: Field::Hyperparam("a = b".into()),
                op: Op::Eq,
                value: Value::Text("x".into())
            })
        );
        assert_eq!(
            parse("metrics.`val loss`<=1 and tags.mlflow.runName = 'r'").unwrap(),
            Some(Expr::And(vec![
                Expr::Compare {
                    field: Field::Metric("val loss".into()),
                    op: Op::Le,
                    value: Value::Number(1.0)
                },
                Expr::Compare {
                    field: Field::Name,
                    op: Op::Eq,
                    value: Value::Text("r".into())
                },
            ]))
        );
    }

    #[test]
    fn like_matches_as_sql_does() {
        assert!(like("%x%", "a x b", false));
        assert!(like("a_c", "abc", false));
        assert!(!like("a_c", "abbc", false));
        assert!(like("AB%", "abz", true));
        assert!(!like("AB%", "abz", false));
    }

    #[test]
    fn order_by_takes_one_key() {
        assert_eq!(
            parse_order(&["metrics.acc DESC".into()]).unwrap(),
            Sort {
                key: SortKey::Metric("acc".into()),
                descending: true
            }
        );
        assert!(parse_order(&["a".into(), "b".into()]).is_err());
    }
}
