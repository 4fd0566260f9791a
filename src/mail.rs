//! Outgoing mail, when `--smtp-url` is set: our own small SMTP client (EHLO, MAIL FROM, RCPT TO,
//! DATA, QUIT) over a plain TCP connection to a relay that handles TLS, login and the outside
//! world. Each mail is sent on tokio's blocking pool, at most [`MAX_SENDING`] at once, and takes
//! at most [`SEND_TIMEOUT`] from waiting for its turn to the relay's last answer, so a dead
//! relay costs a request ten seconds at worst and never a runtime thread. The words of Tora's
//! mails live here too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::config::SmtpServer;

/// The longest one mail may take, from waiting for a sending slot to the relay's last reply.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Mails being sent at once; the next waits for a slot (within [`SEND_TIMEOUT`]).
pub const MAX_SENDING: usize = 4;
/// The longest reply line read from a relay, and the most lines in one reply: a relay that
/// talks on and on cannot grow our memory.
const MAX_REPLY_LINE: u64 = 1024;
const MAX_REPLY_LINES: usize = 64;

/// One plain-text mail.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// The configured relay and sender; cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    relay: SmtpServer,
    from: String,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Mailer {
    pub fn new(relay: SmtpServer, from: String) -> Mailer {
        Mailer {
            relay,
            from,
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_SENDING)),
        }
    }

    pub fn relay(&self) -> &SmtpServer {
        &self.relay
    }

    pub fn sender(&self) -> &str {
        &self.from
    }

    /// Hands `mail` to the relay: true once the relay has accepted it. A failure is logged
    /// (never the body: it carries a secret link) and returned as false, never as an error:
    /// a mail that did not go out must not undo what the request did.
    pub async fn send(&self, mail: Mail) -> bool {
        let deadline = Instant::now() + SEND_TIMEOUT;
        let to = mail.to.clone();
        let slot = match tokio::time::timeout(SEND_TIMEOUT, self.slots.clone().acquire_owned())
            .await
        {
            Ok(Ok(slot)) => slot,
            _ => {
                tracing::warn!(
                    "mail to {to} not sent: {MAX_SENDING} mails were being sent for {SEND_TIMEOUT:?}"
                );
                return false;
            }
        };
        let relay = self.relay.clone();
        let from = self.from.clone();
        // The slot moves into the job: a request that goes away leaves it held until the
        // relay is done with this mail, so the bound holds for the threads too.
        let job = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            deliver(&relay, &from, &mail, deadline)
        });
        match job.await {
            Ok(Ok(())) => true,
            Ok(Err(why)) => {
                tracing::warn!("mail to {to} not sent: {why}");
                false
            }
            Err(e) => {
                tracing::warn!("mail to {to} not sent: the sending task failed: {e}");
                false
            }
        }
    }
}

/// The mail that proves an address: whoever opens `link` reads this mailbox.
pub fn confirmation(to: &str, link: &str) -> Mail {
    Mail {
        to: to.to_string(),
        subject: "Confirm your e-mail address for Tora".into(),
        body: format!(
            "Someone (we hope you) created a Tora account with the address {to}.\n\
             \n\
             Open this link to confirm that the address is yours (it works once, for 7 days):\n\
             {link}\n\
             \n\
             Once it is confirmed, invitations sent to this address show up on your\n\
             Workspaces page. If you did not sign up, ignore this mail.\n"
        ),
    }
}

/// An invitation's link, mailed to the address it was made for.
pub fn invitation(
    to: &str,
    from: Option<&str>,
    workspace: &str,
    role: &str,
    link: &str,
    until: &str,
) -> Mail {
    let who = from.unwrap_or("An OWNER");
    Mail {
        to: to.to_string(),
        subject: format!("{who} invites you to {workspace} on Tora"),
        body: format!(
            "{who} invites you to join the workspace \"{workspace}\" on Tora as {role}.\n\
             \n\
             Open this link to accept or decline (it works once, until {until}):\n\
             {link}\n\
             \n\
             Sign in first, or create an account on the page it opens. Anyone with the\n\
             link can use it, so do not forward it.\n"
        ),
    }
}

/// One SMTP conversation, from connecting to QUIT, within `deadline`.
fn deliver(relay: &SmtpServer, from: &str, mail: &Mail, deadline: Instant) -> Result<(), String> {
    if !plain_address(from) || !plain_address(&mail.to) {
        return Err("an address holds a character SMTP cannot carry".into());
    }
    let addrs = (relay.host.as_str(), relay.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {relay}: {e}"))?;
    let mut failure = format!("{relay} has no address");
    let mut connected = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining(deadline)?) {
            Ok(stream) => {
                connected = Some(stream);
                break;
            }
            Err(e) => failure = format!("cannot connect to {relay}: {e}"),
        }
    }
    let stream = connected.ok_or(failure)?;
    let reader = stream.try_clone().map_err(|e| format!("socket: {e}"))?;
    let mut smtp = Conversation {
        reader: BufReader::new(reader),
        writer: stream,
        deadline,
    };
    smtp.reply(&[220])?;
    let domain = from.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let extensions = match smtp.command(&format!("EHLO {domain}"), &[250]) {
        Ok(lines) => lines,
        // A relay from before ESMTP: HELO, and no extensions.
        Err(_) => {
            smtp.command(&format!("HELO {domain}"), &[250])?;
            Vec::new()
        }
    };
    let utf8 = if mail.to.is_ascii() {
        ""
    } else if extensions.iter().any(|l| {
        l.get(4..)
            .is_some_and(|e| e.eq_ignore_ascii_case("SMTPUTF8"))
    }) {
        " SMTPUTF8"
    } else {
        return Err(format!(
            "{relay} does not take non-ASCII addresses (no SMTPUTF8)"
        ));
    };
    smtp.command(&format!("MAIL FROM:<{from}>{utf8}"), &[250])?;
    smtp.command(&format!("RCPT TO:<{}>", mail.to), &[250, 251])?;
    smtp.command("DATA", &[354])?;
    let id = format!("{}@{domain}", crate::auth::random_token("", 24));
    smtp.write(&message(from, mail, crate::time::now_ms(), &id))?;
    smtp.reply(&[250])?;
    // The mail is the relay's now; a relay that hangs up before saying goodbye changes nothing.
    let _ = smtp.command("QUIT", &[221]);
    Ok(())
}

/// An address fit for `MAIL FROM:<..>` and a header: nothing that ends a command or a bracket.
fn plain_address(address: &str) -> bool {
    !address.is_empty()
        && !address
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
}

fn remaining(deadline: Instant) -> Result<Duration, String> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .ok_or_else(|| format!("the relay took longer than {SEND_TIMEOUT:?}"))
}

struct Conversation {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    deadline: Instant,
}

impl Conversation {
    /// Sends one command line, then reads its reply.
    fn command(&mut self, line: &str, expect: &[u16]) -> Result<Vec<String>, String> {
        self.write(&format!("{line}\r\n"))?;
        self.reply(expect).map_err(|e| {
            let verb = line.split([' ', ':']).next().unwrap_or(line);
            format!("{verb}: {e}")
        })
    }

    fn write(&mut self, text: &str) -> Result<(), String> {
        self.writer
            .set_write_timeout(Some(remaining(self.deadline)?))
            .map_err(|e| format!("socket: {e}"))?;
        self.writer
            .write_all(text.as_bytes())
            .map_err(|e| format!("sending: {e}"))
    }

    /// Reads a reply (`250-...` lines up to a `250 ...` line) and checks its code.
    fn reply(&mut self, expect: &[u16]) -> Result<Vec<String>, String> {
        let mut lines = Vec::new();
        loop {
            self.writer
                .set_read_timeout(Some(remaining(self.deadline)?))
                .map_err(|e| format!("socket: {e}"))?;
            let mut raw = Vec::new();
            (&mut self.reader)
                .take(MAX_REPLY_LINE)
                .read_until(b'\n', &mut raw)
                .map_err(|e| format!("reading the reply: {e}"))?;
            if raw.is_empty() {
                return Err("the relay closed the connection".into());
            }
            let line = String::from_utf8_lossy(&raw).trim_end().to_string();
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if code.is_none() || lines.len() > MAX_REPLY_LINES {
                return Err(format!("not an SMTP reply: {:?}", lines.last()));
            }
            if last {
                break;
            }
        }
        let code = lines[0].get(..3).and_then(|c| c.parse::<u16>().ok());
        match code {
            Some(code) if expect.contains(&code) => Ok(lines),
            _ => Err(format!("the relay answered {:?}", lines.join(" / "))),
        }
    }
}

/// The whole DATA section: headers, the body with CRLF line ends and dot-stuffed (a line that
/// starts with '.' gets another, RFC 5321 4.5.2), and the final `.` line.
fn message(from: &str, mail: &Mail, now: i64, id: &str) -> String {
    let body = mail.body.replace("\r\n", "\n").replace('\r', "\n");
    let (encoding, body) = if body.is_ascii() {
        ("7bit", body)
    } else {
        // Base64 travels through any relay, whether or not it speaks 8BITMIME.
        let encoded = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
        let lines: Vec<&str> = encoded
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap_or(""))
            .collect();
        ("base64", lines.join("\n"))
    };
    let mut out = format!(
        "From: Tora <{from}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: {encoding}\r\n\
         Auto-Submitted: auto-generated\r\n\
         \r\n",
        to = mail.to,
        subject = header_text(&mail.subject),
        date = crate::time::rfc5322(now),
    );
    for line in body.trim_end_matches('\n').split('\n') {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

/// A header value that can start no other header (line breaks and controls become spaces) and
/// survives any relay (non-ASCII text as RFC 2047 encoded words, folded).
fn header_text(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.is_ascii() {
        return clean;
    }
    // At most 45 bytes per word: 60 base64 characters, 72 with the =?utf-8?B?...?= around.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in clean.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    words
        .iter()
        .map(|w| {
            format!(
                "=?utf-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(subject: &str, body: &str) -> Mail {
        Mail {
            to: "bob@lab.org".into(),
            subject: subject.into(),
            body: body.into(),
        }
    }

    #[test]
    fn the_body_is_dot_stuffed_with_crlf_line_ends() {
        let m = message(
            "tora@lab.org",
            &mail("hi", "first\n.hidden\r\n..two\rlast\n"),
            0,
            "x@lab.org",
        );
        let (head, body) = m.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("Content-Transfer-Encoding: 7bit"), "{head}");
        assert!(
            head.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000"),
            "{head}"
        );
        assert_eq!(body, "first\r\n..hidden\r\n...two\r\nlast\r\n.\r\n");
        assert!(!m.replace("\r\n", "").contains('\n') && !m.replace("\r\n", "").contains('\r'));
    }

    #[test]
    fn a_subject_cannot_add_headers_and_non_ascii_is_encoded() {
        let m = message(
            "tora@lab.org",
            &mail("lab\r\nBcc: all@lab.org", "x"),
            0,
            "x@lab.org",
        );
        assert!(m.contains("Subject: lab  Bcc: all@lab.org\r\n"), "{m}");
        assert!(!m.contains("\r\nBcc:"));
        let m = message(
            "tora@lab.org",
            &mail("Jürgen's lab", "grüße\n"),
            0,
            "x@lab.org",
        );
        assert!(m.contains("Subject: =?utf-8?B?"), "{m}");
        assert!(m.is_ascii());
        assert!(m.contains("Content-Transfer-Encoding: base64"));
        let long = header_text(&"ü".repeat(100));
        assert!(long.split("\r\n ").all(|w| w.len() <= 75), "{long}");
    }

    /// A relay that accepts the connection and then says nothing costs the deadline, no more.
    #[test]
    fn a_silent_relay_costs_the_deadline_and_no_more() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let keep = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
        let relay = SmtpServer {
            host: "127.0.0.1".into(),
            port,
        };
        let start = Instant::now();
        let deadline = start + Duration::from_millis(300);
        let err = deliver(&relay, "tora@lab.org", &mail("s", "b"), deadline).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2), "{err}");
        drop(keep.join());
    }

    #[test]
    fn addresses_that_would_break_a_command_are_refused() {
        let relay = SmtpServer {
            host: "127.0.0.1".into(),
            port: 1,
        };
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut bad = mail("s", "b");
        bad.to = "a@b.org>\r\nRCPT TO:<c@d.org".into();
        let err = deliver(&relay, "tora@lab.org", &bad, deadline).unwrap_err();
        assert!(err.contains("cannot carry"), "{err}");
    }
}
