//! `rampart passwd [--iterations N] [--mechanism M] <user>`: prints a hashed credential line
//! for the `-Y` / `MEMCACHED_SASL_PWDB` file. The password is read from the terminal without
//! echo (twice), or as the first line of standard input when that is not a terminal. Nothing
//! is written but the line, so `rampart passwd alice >> /etc/rampart/users` appends it.
//!
//! `--mechanism` picks the entry's kind: `scram-sha-256` (the default, as before SCRAM-SHA-512
//! existed: every SCRAM client of a user with such an entry keeps working), `scram-sha-512`,
//! or `both`, which prints a SCRAM-SHA-256 line, then a SCRAM-SHA-512 line of the same
//! password. A user with only a SCRAM-SHA-512 entry cannot use SCRAM-SHA-256, which clients
//! pick while SCRAM-SHA-512 is not listed (some user's newest hashed entry is SCRAM-SHA-256);
//! `both` serves either, and its SCRAM-SHA-512 line, the newer, lets the server list
//! SCRAM-SHA-512 once every user is ready (docs/security.md).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use rampart_auth::{DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS, ScramHash, ScramSecret};

const USAGE: &str = "usage: rampart passwd [--iterations N] \
                     [--mechanism scram-sha-256|scram-sha-512|both] <user>";

/// The entries `--mechanism` asks for, in the order they are printed (the newest last).
fn kinds(name: &str) -> Option<&'static [ScramHash]> {
    match name {
        "scram-sha-256" => Some(&[ScramHash::Sha256]),
        "scram-sha-512" => Some(&[ScramHash::Sha512]),
        "both" => Some(&[ScramHash::Sha256, ScramHash::Sha512]),
        _ => None,
    }
}

pub fn main(args: Vec<String>) -> ExitCode {
    let mut iterations = DEFAULT_ITERATIONS;
    let mut hashes: &[ScramHash] = &[ScramHash::Sha256];
    let mut user = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--iterations" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&n) => iterations = n,
                _ => {
                    eprintln!(
                        "rampart passwd: --iterations takes {MIN_ITERATIONS} to {MAX_ITERATIONS}"
                    );
                    return ExitCode::from(64);
                }
            },
            "--mechanism" => match args.next().as_deref().and_then(kinds) {
                Some(kinds) => hashes = kinds,
                None => {
                    eprintln!(
                        "rampart passwd: --mechanism takes scram-sha-256, scram-sha-512 or both"
                    );
                    return ExitCode::from(64);
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            name if user.is_none() && !name.starts_with('-') => user = Some(arg),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(64);
            }
        }
    }
    let Some(user) = user else {
        eprintln!("{USAGE}");
        return ExitCode::from(64);
    };
    if user.is_empty()
        || user.len() > 250
        || user
            .bytes()
            .any(|b| b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        eprintln!("rampart passwd: a user name is 1-250 bytes without ':', spaces or controls");
        return ExitCode::from(64);
    }
    let password = match read_password() {
        Ok(password) => password,
        Err(message) => {
            eprintln!("rampart passwd: {message}");
            return ExitCode::FAILURE;
        }
    };
    // Every line first, so that a failure prints none (no half of `both`).
    let mut lines = Vec::with_capacity(hashes.len());
    for &hash in hashes {
        match ScramSecret::generate(hash, password.as_bytes(), iterations) {
            Ok(secret) => lines.push(format!("{user}:{}", secret.to_text())),
            Err(err) => {
                eprintln!("rampart passwd: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    for line in lines {
        println!("{line}");
    }
    ExitCode::SUCCESS
}

fn read_password() -> Result<String, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        let password = line.trim_end_matches(['\r', '\n']).to_string();
        if password.is_empty() {
            return Err("the password is empty".into());
        }
        return Ok(password);
    }
    let first = prompt("Password: ")?;
    let second = prompt("Again: ")?;
    if first != second {
        return Err("the passwords differ".into());
    }
    if first.is_empty() {
        return Err("the password is empty".into());
    }
    Ok(first)
}

/// Reads one line from the terminal with echo off.
fn prompt(text: &str) -> Result<String, String> {
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{text}");
    let _ = stderr.flush();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a terminal (checked by the caller).
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is standard input and `saved` is a valid termios to fill.
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Err("cannot read the terminal's settings".into());
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    // SAFETY: as above, with settings derived from the terminal's own.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    let _ = writeln!(stderr);
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
