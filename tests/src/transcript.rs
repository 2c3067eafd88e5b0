//! The transcript format of the differential suite (`tests/transcripts/*.txt`).
//!
//! A transcript is a list of steps, each a request written to one connection. The replies are
//! not in the file: they are whatever upstream memcached answers, and rampart must answer the
//! same bytes (see [`crate::replay`] and [`crate::normalise`]).
//!
//! # Format
//!
//! ```text
//! # A comment. Blank lines are ignored.
//! args -I 2k -m 1          flags for both servers; at most once, before the first step
//!
//! step set then get        starts a step; the rest of the line is its title
//!   > set foo 0 0 3        writes `set foo 0 0 3\r\n` (one space after `>` is dropped)
//!   > bar
//!   >> get fo              writes `get fo` with no line ending
//!   split                  ends one write: what follows is written separately, later
//!   > o
//!
//! step the server hangs up
//!   on second              runs on connection `second` (default `main`); opened on first
//!                          use, reopened when a step closed it
//!   sleep 2100             waits 2100 ms before writing (only for expiry; use rarely)
//!   > quit
//!   expect close           reads until the server closes instead of using the sentinel
//!
//! step the client hangs up
//!   > set k 0 0 10
//!   hangup                 closes our sending side after the request (the server sees end
//!                          of file), then reads until the server closes
//! ```
//!
//! Text after `>` and `>>` may contain escapes: `\r`, `\n`, `\t`, `\0`, `\\`, `\xHH`, and
//! `\{N:TEXT}` for TEXT repeated N times (`\{251:k}` is a 251-byte key; TEXT may use the
//! other escapes but not contain `}`). `{C1}`, `{C2}`...
//! stand for the CAS unique that this server's replies gave the label C1, C2... (see
//! [`crate::normalise`]), so `cas` requests work against both servers.

use std::path::Path;
use std::time::Duration;

/// Connection used by steps without `on`.
pub const DEFAULT_CONN: &str = "main";
/// Upper bound for `sleep`, so a typo cannot stall the suite.
const MAX_SLEEP_MS: u64 = 10_000;
/// Upper bound for `\{N:...}` repetition, so a typo cannot exhaust memory.
const MAX_REPEAT_BYTES: usize = 64 * 1024 * 1024;

/// A parsed transcript file.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub name: String,
    /// Flags passed to both servers.
    pub args: Vec<String>,
    pub steps: Vec<Step>,
}

/// One request and the reply it gets.
#[derive(Debug, Clone)]
pub struct Step {
    /// Line of the `step` directive, for reports.
    pub line: usize,
    pub title: String,
    pub conn: String,
    pub sleep: Option<Duration>,
    /// Separate writes, in order; the parts of one write are sent with one `write_all`.
    pub writes: Vec<Vec<Part>>,
    /// The reply ends with the server closing the connection.
    pub expect_close: bool,
    /// The client shuts down its sending side after the request.
    pub hangup: bool,
}

/// A piece of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Bytes(Vec<u8>),
    /// `{Cn}`: the CAS unique labelled `Cn` on the server being replayed.
    Cas(usize),
}

impl Step {
    /// The request as written in the transcript (CAS labels kept), for reports.
    pub fn request_template(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, write) in self.writes.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b"<split>");
            }
            for part in write {
                match part {
                    Part::Bytes(bytes) => out.extend_from_slice(bytes),
                    Part::Cas(n) => out.extend_from_slice(format!("{{C{n}}}").as_bytes()),
                }
            }
        }
        out
    }
}

impl Transcript {
    pub fn load(path: &Path) -> Result<Transcript, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Transcript::parse(&name, &text).map_err(|e| format!("{}:{e}", path.display()))
    }

    /// Parses a transcript; errors are `<line>: <message>`.
    pub fn parse(name: &str, text: &str) -> Result<Transcript, String> {
        let mut transcript = Transcript {
            name: name.to_string(),
            args: Vec::new(),
            steps: Vec::new(),
        };
        let mut saw_args = false;
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let fail = |msg: String| format!("{line_no}: {msg}");
            let line = raw.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (word, rest) = split_directive(line);
            if word == "args" {
                if saw_args || !transcript.steps.is_empty() {
                    return Err(fail("`args` must come once, before the first step".into()));
                }
                saw_args = true;
                transcript.args = rest.split_whitespace().map(String::from).collect();
                continue;
            }
            if word == "step" {
                if rest.trim().is_empty() {
                    return Err(fail("a step needs a title".into()));
                }
                transcript.steps.push(Step {
                    line: line_no,
                    title: rest.trim().to_string(),
                    conn: DEFAULT_CONN.to_string(),
                    sleep: None,
                    writes: vec![Vec::new()],
                    expect_close: false,
                    hangup: false,
                });
                continue;
            }
            let Some(step) = transcript.steps.last_mut() else {
                return Err(fail(format!("`{word}` outside a step")));
            };
            match word {
                ">" | ">>" => {
                    let mut parts = parse_text(rest).map_err(fail)?;
                    if word == ">" {
                        parts.push(Part::Bytes(b"\r\n".to_vec()));
                    }
                    if let Some(write) = step.writes.last_mut() {
                        write.extend(parts);
                    }
                }
                "split" => step.writes.push(Vec::new()),
                "on" => step.conn = rest.trim().to_string(),
                "sleep" => {
                    let ms: u64 = rest
                        .trim()
                        .parse()
                        .map_err(|_| fail(format!("bad sleep `{}`", rest.trim())))?;
                    if ms > MAX_SLEEP_MS {
                        return Err(fail(format!("sleep is at most {MAX_SLEEP_MS} ms")));
                    }
                    step.sleep = Some(Duration::from_millis(ms));
                }
                "expect" if rest.trim() == "close" => step.expect_close = true,
                "hangup" => {
                    step.hangup = true;
                    step.expect_close = true;
                }
                _ => return Err(fail(format!("unknown directive `{word}`"))),
            }
        }
        if transcript.steps.is_empty() {
            return Err("0: no steps".into());
        }
        Ok(transcript)
    }
}

/// Splits `> text` / `>> text` / `word rest`; for `>` forms exactly one space is dropped.
fn split_directive(line: &str) -> (&str, &str) {
    for prefix in [">>", ">"] {
        if let Some(rest) = line.strip_prefix(prefix) {
            return (prefix, rest.strip_prefix(' ').unwrap_or(rest));
        }
    }
    match line.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest),
        None => (line, ""),
    }
}

/// Decodes escapes and `{Cn}` references.
fn parse_text(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut bytes = Vec::new();
    let src = text.as_bytes();
    let mut i = 0;
    while i < src.len() {
        let c = src[i];
        if c == b'{'
            && let Some((n, len)) = cas_reference(&src[i..])
        {
            if !bytes.is_empty() {
                parts.push(Part::Bytes(std::mem::take(&mut bytes)));
            }
            parts.push(Part::Cas(n));
            i += len;
            continue;
        }
        if c != b'\\' {
            bytes.push(c);
            i += 1;
            continue;
        }
        let Some(&e) = src.get(i + 1) else {
            return Err("`\\` at the end of a line".into());
        };
        i += 2;
        match e {
            b'r' => bytes.push(b'\r'),
            b'n' => bytes.push(b'\n'),
            b't' => bytes.push(b'\t'),
            b'0' => bytes.push(0),
            b'\\' => bytes.push(b'\\'),
            b'x' => {
                let hex = src
                    .get(i..i + 2)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("`\\x` needs two hex digits")?;
                bytes.push(hex);
                i += 2;
            }
            b'{' => {
                let close = src[i..]
                    .iter()
                    .position(|&b| b == b'}')
                    .ok_or("`\\{` without `}`")?;
                let body = std::str::from_utf8(&src[i..i + close]).map_err(|e| e.to_string())?;
                let (count, unit) = body.split_once(':').ok_or("`\\{N:TEXT}` needs a `:`")?;
                let count: usize = count
                    .parse()
                    .map_err(|_| format!("bad repeat count `{count}`"))?;
                let unit = match parse_text(unit)?.as_slice() {
                    [Part::Bytes(unit)] => unit.clone(),
                    _ => return Err(format!("repeat `{body}` must be plain bytes")),
                };
                if unit.is_empty() || count.saturating_mul(unit.len()) > MAX_REPEAT_BYTES {
                    return Err(format!("repeat `{body}` is empty or too large"));
                }
                bytes.extend(unit.repeat(count));
                i += close + 1;
            }
            other => return Err(format!("unknown escape `\\{}`", other as char)),
        }
    }
    if !bytes.is_empty() {
        parts.push(Part::Bytes(bytes));
    }
    Ok(parts)
}

/// `{C<digits>}` at the start of `src`: the label number and the length of the reference.
fn cas_reference(src: &[u8]) -> Option<(usize, usize)> {
    let rest = src.strip_prefix(b"{C")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || rest.get(digits) != Some(&b'}') {
        return None;
    }
    let n = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    Some((n, digits + 3))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is the test failing

    use super::*;

    #[test]
    fn parses_steps_escapes_and_cas_references() {
        let text = "# c\nargs -m 8\nstep one\n > set k 0 0 2\n > \\x01\\{2:a\\x62}\nsplit\n\
                    >> cas k 0 0 1 {C12}\nstep two\n on other\n sleep 5\n >\n expect close\n";
        let t = Transcript::parse("t", text).unwrap();
        assert_eq!(t.args, ["-m", "8"]);
        assert_eq!(t.steps.len(), 2);
        let one = &t.steps[0];
        assert_eq!(one.writes.len(), 2);
        assert_eq!(
            one.writes[0],
            [
                Part::Bytes(b"set k 0 0 2".to_vec()),
                Part::Bytes(b"\r\n".to_vec()),
                Part::Bytes(b"\x01abab".to_vec()),
                Part::Bytes(b"\r\n".to_vec()),
            ]
        );
        assert_eq!(
            one.writes[1],
            [Part::Bytes(b"cas k 0 0 1 ".to_vec()), Part::Cas(12)]
        );
        let two = &t.steps[1];
        assert_eq!(two.conn, "other");
        assert_eq!(two.sleep, Some(Duration::from_millis(5)));
        assert!(two.expect_close);
        assert_eq!(two.writes[0], [Part::Bytes(b"\r\n".to_vec())]);
    }

    #[test]
    fn rejects_mistakes_with_the_line_number() {
        assert!(
            Transcript::parse("t", "> get\n")
                .unwrap_err()
                .starts_with("1:")
        );
        let bad_escape = Transcript::parse("t", "step s\n> \\q\n").unwrap_err();
        assert!(bad_escape.starts_with("2:"), "{bad_escape}");
        assert!(Transcript::parse("t", "step s\nargs -m 1\n").is_err());
        assert!(Transcript::parse("t", "step s\nsleep 999999\n").is_err());
    }
}
