//! Rules for what people type that both the HTTP API and the admin CLI apply, so an account
//! made either way obeys the same rules; and the rules for a run's group, which every way of
//! making or changing a run applies.

use unicode_normalization::UnicodeNormalization;
use unicode_script::{Script, UnicodeScript};

use crate::error::{Error, Result};

/// RFC 5321's longest address, in bytes.
const MAX_EMAIL: usize = 254;

/// The longest group name, in characters.
pub const MAX_GROUP: usize = 128;

/// A run's group as stored: trimmed, at most [`MAX_GROUP`] characters, no control characters;
/// blank is no group (None). Otherwise a 400 that says what is wrong.
pub fn group(raw: &str) -> Result<Option<String>> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let chars = trimmed.chars().count();
    if chars > MAX_GROUP {
        return Err(Error::bad_request(format!(
            "the group is {chars} characters long; the limit is {MAX_GROUP}"
        )));
    }
    if let Some(c) = trimmed.chars().find(|c| c.is_control()) {
        return Err(Error::bad_request(format!(
            "the group must not contain control characters (U+{:04X})",
            c as u32
        )));
    }
    Ok(Some(trimmed.to_string()))
}

/// The canonical form of an e-mail address, or a 400 that says what is wrong with it.
///
/// Two addresses that look alike must be the same account or no account at all. So the text
/// is NFKC-normalised (full-width `ａｌｉｃｅ` is `alice`), lower-cased, and the domain loses a
/// trailing dot; and addresses are refused that carry characters no one sees (zero-width
/// spaces, joiners, bidi controls, soft hyphens), control characters or spaces, or that mix
/// scripts within the local part or the domain (a Cyrillic `а` among Latin letters), following
/// Unicode TS #39's "highly restrictive" level: one script, or Latin with Chinese, Japanese or
/// Korean.
pub fn normalize_email(raw: &str) -> Result<String> {
    let refuse = |why: &str| Err(Error::bad_request(format!("the e-mail address {why}")));
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return refuse("is required");
    }
    if let Some(c) = trimmed.chars().find(|&c| invisible(c)) {
        return refuse(&format!(
            "contains an invisible character (U+{:04X}); type it again by hand",
            c as u32
        ));
    }
    if trimmed.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return refuse("must not contain spaces or control characters");
    }
    let email: String = trimmed.nfkc().collect::<String>().to_lowercase();
    let Some((local, domain)) = email.rsplit_once('@') else {
        return refuse("needs an '@'");
    };
    let domain = domain.trim_end_matches('.');
    if local.is_empty() || domain.is_empty() || local.contains('@') {
        return refuse("must look like name@domain");
    }
    if domain.split('.').any(str::is_empty) {
        return refuse("has an empty part in its domain");
    }
    for (part, what) in [(local, "the part before '@'"), (domain, "the domain")] {
        if let Some((a, b)) = mixed_scripts(part) {
            return refuse(&format!(
                "mixes {} and {} letters in {what}, which makes it look like another address",
                a.full_name(),
                b.full_name()
            ));
        }
    }
    let email = format!("{local}@{domain}");
    if email.len() > MAX_EMAIL {
        return refuse(&format!("is longer than {MAX_EMAIL} bytes"));
    }
    Ok(email)
}

/// Unicode's Default_Ignorable_Code_Point characters (DerivedCoreProperties.txt): rendered as
/// nothing, so they make a different string that displays the same.
fn invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

/// Two scripts that `text` mixes beyond what TS #39's highly restrictive level allows.
fn mixed_scripts(text: &str) -> Option<(Script, Script)> {
    let mut seen: Vec<Script> = Vec::new();
    for c in text.chars() {
        let s = c.script();
        if matches!(s, Script::Common | Script::Inherited) || seen.contains(&s) {
            continue;
        }
        seen.push(s);
    }
    if seen.len() < 2 {
        return None;
    }
    const CJK: [&[Script]; 3] = [
        &[
            Script::Latin,
            Script::Han,
            Script::Hiragana,
            Script::Katakana,
        ],
        &[Script::Latin, Script::Han, Script::Bopomofo],
        &[Script::Latin, Script::Han, Script::Hangul],
    ];
    if CJK.iter().any(|set| seen.iter().all(|s| set.contains(s))) {
        return None;
    }
    seen.sort_by_key(|s| s.full_name());
    Some((seen[0], seen[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_become_the_same_address() {
        for raw in [
            "alice@lab.org",
            "  Alice@LAB.org ",
            "ａｌｉｃｅ@ｌａｂ.ｏｒｇ",
            "alice@lab.org.",
            "ALICE@lab.org..",
        ] {
            assert_eq!(normalize_email(raw).unwrap(), "alice@lab.org", "{raw:?}");
        }
        assert_eq!(normalize_email("jürgen@uni.de").unwrap(), "jürgen@uni.de");
        assert_eq!(
            normalize_email("Андрей@почта.рф").unwrap(),
            "андрей@почта.рф"
        );
        assert_eq!(
            normalize_email("山田たろう@lab.jp").unwrap(),
            "山田たろう@lab.jp"
        );
    }

    #[test]
    fn a_group_is_trimmed_blank_is_none_and_long_or_control_names_are_refused() {
        assert_eq!(group("  sweep-lr ").unwrap().as_deref(), Some("sweep-lr"));
        assert_eq!(
            group("cv fold 3/5").unwrap().as_deref(),
            Some("cv fold 3/5")
        );
        assert_eq!(group(" \t ").unwrap(), None);
        let longest = "é".repeat(MAX_GROUP);
        assert_eq!(group(&longest).unwrap(), Some(longest.clone()));
        let msg = group(&format!("{longest}x")).unwrap_err().to_string();
        assert!(
            msg.contains("129 characters") && msg.contains("128"),
            "{msg}"
        );
        for raw in ["a\nb", "a\u{7}b", "a\u{9B}b"] {
            let msg = group(raw).unwrap_err().to_string();
            assert!(msg.contains("control characters"), "{raw:?}: {msg}");
        }
    }

    #[test]
    fn invisible_control_and_mixed_script_addresses_are_refused_by_name() {
        for (raw, says) in [
            ("alice\u{200B}@lab.org", "invisible character (U+200B)"),
            ("al\u{00AD}ice@lab.org", "invisible character (U+00AD)"),
            ("alice@lab.org\u{202E}", "invisible character (U+202E)"),
            ("\u{FEFF}alice@lab.org", "invisible character (U+FEFF)"),
            ("ali ce@lab.org", "spaces or control"),
            ("alice\u{7}@lab.org", "spaces or control"),
            ("\u{430}lice@lab.org", "mixes Cyrillic and Latin"),
            ("alice@l\u{430}b.org", "in the domain"),
            ("alice@", "name@domain"),
            ("@lab.org", "name@domain"),
            ("alice", "needs an '@'"),
            ("alice@lab..org", "empty part"),
            ("", "is required"),
        ] {
            let msg = normalize_email(raw).unwrap_err().to_string();
            assert!(msg.contains(says), "{raw:?}: {msg}");
        }
        let long = format!("{}@lab.org", "a".repeat(250));
        assert!(
            normalize_email(&long)
                .unwrap_err()
                .to_string()
                .contains("254")
        );
    }
}
