//! The audit trail: one JSON object per line, to a file (`-o audit_log=<path>`) or standard
//! error (`-o audit_log=-`), reopened on SIGHUP for log rotation.
//!
//! Executors never block on it. Each executor (and the process's own threads) has a bounded
//! ring ([`RING_EVENTS`]); an event that does not fit is dropped and counted, and the writer
//! thread, which drains every ring, reports the loss as its own event (`audit.dropped`) with
//! the number lost. Events carry names, addresses, commands and (length-limited, escaped)
//! keys; never a password, a secret or a value.
//!
//! The writer also keeps a bounded log of recent refusals and authentication failures, merged
//! by (identity, event, reason, command) with counts, as Redis's `ACL LOG` does, for `acl log`.
//!
//! # Events (stable ids)
//! `auth.success` (with `-o audit_auth_success`), `auth.failure`, `auth.lockout`, `acl.denied`,
//! `admin.command`, `acl.reload`, `credentials.reload`, `audit.reopened`, `audit.dropped`,
//! `conn.open` and `conn.close` (with `-o audit_connections`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Select, Sender, TrySendError, bounded};
use serde::Serialize;

use crate::authz::Identity;

/// Events one ring holds before new ones are dropped.
pub const RING_EVENTS: usize = 4096;
/// Longest key an event shows, in bytes of the key (escaped after the cut).
pub const KEY_BYTES: usize = 64;
/// Entries the recent-refusals log keeps (the least recently seen goes first).
pub const RECENT_ENTRIES: usize = 128;

/// Where the trail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stderr,
    File(PathBuf),
}

/// `-o audit_log`, `-o audit_auth_success`, `-o audit_connections`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSettings {
    pub target: Option<Target>,
    pub auth_success: bool,
    pub connections: bool,
}

/// Why the trail cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("-o audit_log={path}: {err}")]
    Open { path: String, err: io::Error },
    #[error("cannot start the audit writer: {0}")]
    Thread(io::Error),
}

/// Who an event is about.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Hash)]
pub struct Who {
    pub kind: &'static str,
    pub name: String,
}

impl Who {
    pub fn of(identity: &Identity) -> Who {
        let (kind, name) = match identity {
            Identity::Anonymous => ("anonymous", String::new()),
            Identity::Certificate(peer) => ("cert", peer.common_name.clone().unwrap_or_default()),
            Identity::User(user) => ("user", user.as_str().to_owned()),
            Identity::Psk(name) => ("psk", name.to_string()),
            Identity::Uid(uid) => ("uid", uid.to_string()),
        };
        Who { kind, name }
    }
}

/// One audit event. Fields a cause does not have are left out of its line.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub time: String,
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Who>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl Event {
    /// An event with only its id and outcome; the builder methods add the rest.
    pub fn new(event: &'static str, outcome: &'static str) -> Event {
        Event {
            time: rfc3339_now(),
            event,
            identity: None,
            remote: None,
            local: None,
            listener: None,
            protocol: None,
            command: None,
            key: None,
            outcome,
            reason: None,
            count: None,
        }
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Event {
        self.reason = Some(reason.into());
        self
    }

    pub fn command(mut self, command: &'static str) -> Event {
        self.command = Some(command);
        self
    }

    pub fn key(mut self, key: &[u8]) -> Event {
        self.key = Some(escape_key(key));
        self
    }

    pub fn identity(mut self, identity: &Identity) -> Event {
        self.identity = Some(Who::of(identity));
        self
    }
}

/// A key as an event shows it: at most [`KEY_BYTES`] bytes, printable ASCII as it is and
/// everything else (and `\`) as `\xNN`, with `...` when cut.
pub fn escape_key(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len().min(KEY_BYTES) + 3);
    for &byte in key.iter().take(KEY_BYTES) {
        if byte.is_ascii_graphic() && byte != b'\\' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    if key.len() > KEY_BYTES {
        out.push_str("...");
    }
    out
}

/// What one connection's events share, kept by its session while the trail is on.
#[derive(Debug, Clone)]
pub struct ConnContext {
    ring: Ring,
    remote: Option<SocketAddr>,
    local: Option<SocketAddr>,
    listener: &'static str,
    pub auth_success: bool,
    /// `-o audit_connections`: opening and closing are recorded.
    pub connections: bool,
}

impl ConnContext {
    /// Sends `event` with this connection's addresses and listener filled in.
    pub fn emit(&self, mut event: Event, protocol: Option<&'static str>) {
        event.remote = self.remote.map(|a| a.to_string());
        event.local = self.local.map(|a| a.to_string());
        event.listener = Some(self.listener);
        event.protocol = protocol;
        self.ring.send(event);
    }
}

/// One bounded ring into the writer.
#[derive(Debug, Clone)]
struct Ring {
    sender: Sender<Message>,
    dropped: Arc<AtomicU64>,
}

impl Ring {
    fn send(&self, event: Event) {
        match self.sender.try_send(Message::Event(Box::new(event))) {
            Ok(()) => {}
            // The writer has stopped (the very end of a shutdown): nothing to count against.
            Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[derive(Debug)]
enum Message {
    Event(Box<Event>),
    Reopen,
    /// Write what every ring holds, flush and stop (the process is ending).
    Stop,
}

/// Counters `stats` reports.
#[derive(Debug, Default)]
pub struct AuditCounters {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
}

/// One merged entry of the recent-refusals log.
#[derive(Debug, Clone)]
pub struct Recent {
    pub identity: Who,
    pub event: &'static str,
    pub reason: String,
    pub command: String,
    pub count: u64,
    pub last_key: String,
    pub first_seen: u64,
    pub last_seen: u64,
}

type RecentKey = (Who, &'static str, String, String);

/// The trail as configured: a ring per executor, one for the process's own threads.
#[derive(Debug)]
pub struct Audit {
    rings: Vec<Ring>,
    process_ring: Ring,
    settings: AuditSettings,
    pub counters: Arc<AuditCounters>,
    recent: Arc<Mutex<HashMap<RecentKey, Recent>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Audit {
    /// Opens the target and starts the writer thread. `None` without `-o audit_log`.
    pub fn start(settings: &AuditSettings, executors: usize) -> Result<Option<Audit>, AuditError> {
        let Some(target) = &settings.target else {
            return Ok(None);
        };
        let sink = open(target)?;
        let counters = Arc::new(AuditCounters::default());
        let recent = Arc::new(Mutex::new(HashMap::new()));
        let mut receivers = Vec::new();
        let mut ring = || {
            let (sender, receiver) = bounded(RING_EVENTS);
            let dropped = Arc::new(AtomicU64::new(0));
            receivers.push((receiver, Arc::clone(&dropped)));
            Ring { sender, dropped }
        };
        let rings: Vec<Ring> = (0..executors).map(|_| ring()).collect();
        let process_ring = ring();
        let writer = Writer {
            target: target.clone(),
            sink,
            receivers,
            counters: Arc::clone(&counters),
            recent: Arc::clone(&recent),
        };
        let writer = std::thread::Builder::new()
            .name("rampart-audit".into())
            .spawn(move || writer.run())
            .map_err(AuditError::Thread)?;
        Ok(Some(Audit {
            rings,
            process_ring,
            settings: settings.clone(),
            counters,
            recent,
            writer: Mutex::new(Some(writer)),
        }))
    }

    /// At the end of the process, after the executors have stopped: waits until the writer
    /// has written everything the rings hold.
    pub fn finish(&self) {
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(writer) = writer
            && self.process_ring.sender.send(Message::Stop).is_ok()
        {
            let _ = writer.join();
        }
    }

    /// A connection's context on executor `core`.
    pub fn conn(
        &self,
        core: usize,
        remote: Option<SocketAddr>,
        local: Option<SocketAddr>,
        listener: &'static str,
    ) -> ConnContext {
        ConnContext {
            ring: self.rings[core % self.rings.len()].clone(),
            remote,
            local,
            listener,
            auth_success: self.settings.auth_success,
            connections: self.settings.connections,
        }
    }

    /// An event from the process's own threads (reloads, signals).
    pub fn emit(&self, event: Event) {
        self.process_ring.send(event);
    }

    /// SIGHUP: reopen the file (after rotation). Sent through the process's ring, so events
    /// the signal thread sends after it go to the new file; the signal thread may wait for
    /// room (it is no executor).
    pub fn reopen(&self) {
        let _ = self.process_ring.sender.send(Message::Reopen);
    }

    /// The recent-refusals log, most recent first.
    pub fn recent(&self) -> Vec<Recent> {
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut entries: Vec<Recent> = recent.values().cloned().collect();
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.last_seen));
        entries
    }

    /// Empties the recent-refusals log.
    pub fn reset_recent(&self) {
        self.recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}

fn open(target: &Target) -> Result<Box<dyn Write + Send>, AuditError> {
    match target {
        Target::Stderr => Ok(Box::new(io::stderr())),
        Target::File(path) => {
            let file: File = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|err| AuditError::Open {
                    path: path.display().to_string(),
                    err,
                })?;
            Ok(Box::new(io::BufWriter::new(file)))
        }
    }
}

struct Writer {
    target: Target,
    sink: Box<dyn Write + Send>,
    receivers: Vec<(Receiver<Message>, Arc<AtomicU64>)>,
    counters: Arc<AuditCounters>,
    recent: Arc<Mutex<HashMap<RecentKey, Recent>>>,
}

impl Writer {
    fn run(mut self) {
        // Losses already reported, and rings whose every sender is gone, per ring.
        let mut reported = vec![0u64; self.receivers.len()];
        let mut closed = vec![false; self.receivers.len()];
        while closed.iter().any(|closed| !closed) {
            let mut select = Select::new();
            let mut open = Vec::new();
            for (ring, (receiver, _)) in self.receivers.iter().enumerate() {
                if !closed[ring] {
                    select.recv(receiver);
                    open.push(ring);
                }
            }
            let ready = select.select();
            let ring = open[ready.index()];
            let message = ready.recv(&self.receivers[ring].0);
            drop(select);
            let stop = match message {
                Ok(message) => self.handle(message),
                Err(_) => {
                    closed[ring] = true;
                    false
                }
            };
            // Drain what else is waiting, report losses, then flush once.
            for (ring, reported) in reported.iter_mut().enumerate() {
                while let Ok(message) = self.receivers[ring].0.try_recv() {
                    self.handle(message);
                }
                let dropped = self.receivers[ring].1.load(Ordering::Relaxed);
                if dropped > *reported {
                    let lost = dropped - *reported;
                    *reported = dropped;
                    self.counters.dropped.fetch_add(lost, Ordering::Relaxed);
                    let mut event = Event::new("audit.dropped", "lost")
                        .reason("a ring was full: the events were not recorded");
                    event.count = Some(lost);
                    self.write(&event);
                }
            }
            let _ = self.sink.flush();
            if stop {
                return;
            }
        }
    }

    /// One message; `true` for [`Message::Stop`].
    fn handle(&mut self, message: Message) -> bool {
        match message {
            Message::Event(event) => self.write(&event),
            Message::Reopen => self.reopen(),
            Message::Stop => return true,
        }
        false
    }

    fn write(&mut self, event: &Event) {
        self.remember(event);
        let Ok(mut line) = serde_json::to_vec(event) else {
            return;
        };
        line.push(b'\n');
        if self.sink.write_all(&line).is_ok() {
            self.counters.written.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Refusals and authentication failures go into the recent log too.
    fn remember(&self, event: &Event) {
        if !matches!(event.event, "acl.denied" | "auth.failure") {
            return;
        }
        let identity = event.identity.clone().unwrap_or(Who {
            kind: "anonymous",
            name: String::new(),
        });
        let reason = event.reason.clone().unwrap_or_default();
        let command = event.command.unwrap_or("").to_owned();
        let now = crate::stats::unix_now();
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (
            identity.clone(),
            event.event,
            reason.clone(),
            command.clone(),
        );
        if let Some(entry) = recent.get_mut(&key) {
            entry.count += 1;
            entry.last_seen = now;
            entry.last_key = event.key.clone().unwrap_or_default();
            return;
        }
        if recent.len() >= RECENT_ENTRIES
            && let Some(oldest) = recent
                .iter()
                .min_by_key(|(_, entry)| entry.last_seen)
                .map(|(key, _)| key.clone())
        {
            recent.remove(&oldest);
        }
        recent.insert(
            key,
            Recent {
                identity,
                event: event.event,
                reason,
                command,
                count: 1,
                last_key: event.key.clone().unwrap_or_default(),
                first_seen: now,
                last_seen: now,
            },
        );
    }

    fn reopen(&mut self) {
        let _ = self.sink.flush();
        match open(&self.target) {
            Ok(sink) => {
                self.sink = sink;
                self.write(&Event::new("audit.reopened", "ok"));
            }
            Err(err) => {
                log::error!("audit log not reopened, still writing the old file: {err}");
                self.write(&Event::new("audit.reopened", "failed").reason(err.to_string()));
            }
        }
        let _ = self.sink.flush();
    }
}

/// Now as `2026-12-02T03:04:05.678Z`.
pub fn rfc3339_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

/// `seconds` since the epoch (UTC) with `millis`, in RFC 3339's form.
fn rfc3339(seconds: u64, millis: u32) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_ring_drops_and_the_loss_is_reported_as_an_event() {
        let (sender, receiver) = bounded(2);
        let dropped = Arc::new(AtomicU64::new(0));
        let ring = Ring {
            sender,
            dropped: Arc::clone(&dropped),
        };
        for n in 0..5u8 {
            ring.send(Event::new("acl.denied", "denied").key(&[b'a' + n]));
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
        drop(ring);
        let sink = Shared::default();
        let counters = Arc::new(AuditCounters::default());
        // The only ring's sender is gone: the writer ends once it has drained it.
        let writer = Writer {
            target: Target::Stderr,
            sink: Box::new(sink.clone()),
            receivers: vec![(receiver, dropped)],
            counters: Arc::clone(&counters),
            recent: Arc::new(Mutex::new(HashMap::new())),
        };
        writer.run();
        let text = String::from_utf8(sink.0.lock().expect("lock").clone()).expect("utf-8");
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
            .collect();
        let ids: Vec<&str> = events
            .iter()
            .map(|e| e["event"].as_str().expect("id"))
            .collect();
        assert_eq!(ids, ["acl.denied", "acl.denied", "audit.dropped"], "{text}");
        assert_eq!(events[2]["count"], 3);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(counters.written.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn refusals_are_merged_in_the_recent_log() {
        let writer = Writer {
            target: Target::Stderr,
            sink: Box::new(io::sink()),
            receivers: Vec::new(),
            counters: Arc::default(),
            recent: Arc::new(Mutex::new(HashMap::new())),
        };
        let who = Identity::Psk("p".into());
        for key in [b"k1", b"k2"] {
            writer.remember(
                &Event::new("acl.denied", "denied")
                    .command("get")
                    .reason("key")
                    .key(key)
                    .identity(&who),
            );
        }
        writer.remember(
            &Event::new("acl.denied", "denied")
                .command("set")
                .reason("key"),
        );
        writer.remember(&Event::new("admin.command", "allowed").command("flush_all"));
        let recent = writer.recent.lock().expect("lock");
        assert_eq!(recent.len(), 2);
        let get = recent
            .values()
            .find(|entry| entry.command == "get")
            .expect("merged");
        assert_eq!((get.count, get.last_key.as_str()), (2, "k2"));
        assert_eq!(get.identity.kind, "psk");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_796_180_645, 678), "2026-12-02T03:04:05.678Z");
    }

    #[test]
    fn keys_are_cut_and_escaped() {
        assert_eq!(escape_key(b"plain-key"), "plain-key");
        assert_eq!(escape_key(b"a\"b\\c\x01"), "a\"b\\x5cc\\x01");
        let long = vec![b'k'; 100];
        assert_eq!(escape_key(&long), format!("{}...", "k".repeat(64)));
    }

    #[test]
    fn events_leave_out_what_they_do_not_have() {
        let mut event = Event::new("acl.denied", "denied")
            .command("get")
            .key(b"k")
            .reason("key");
        event.time = "T".into();
        assert_eq!(
            serde_json::to_string(&event).expect("serialises"),
            r#"{"time":"T","event":"acl.denied","command":"get","key":"k","outcome":"denied","reason":"key"}"#
        );
    }
}
