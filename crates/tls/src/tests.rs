//! Sessions driven against an in-memory OpenSSL client, with a PKI generated per test.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslSession,
    SslSessionCacheMode, SslStream, SslVerifyMode, SslVersion,
};

use crate::test_pki::Pki;
use crate::{
    ContextHolder, KeyFormat, ListenerTls, MinVersion, Next, TlsError, TlsSession, TlsSettings,
    VerifyMode,
};

#[derive(Debug, Default)]
struct Pipe {
    incoming: Vec<u8>,
    outgoing: Vec<u8>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.incoming.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.incoming.len());
        buf[..n].copy_from_slice(&self.incoming[..n]);
        self.incoming.drain(..n);
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Client {
    ctx: SslContext,
    sessions: Arc<Mutex<Vec<SslSession>>>,
}

fn client(pki: &Pki, max: Option<SslVersion>, with_cert: bool) -> Client {
    client_with(pki, max, with_cert, |_| {})
}

/// [`client`], with `configure` applied to its context last (cipher choices).
fn client_with(
    pki: &Pki,
    max: Option<SslVersion>,
    with_cert: bool,
    configure: impl FnOnce(&mut SslContextBuilder),
) -> Client {
    let mut b = SslContextBuilder::new(SslMethod::tls_client()).unwrap();
    b.cert_store_mut().add_cert(pki.ca.cert.clone()).unwrap();
    b.set_verify(SslVerifyMode::PEER);
    b.set_max_proto_version(max).unwrap();
    if with_cert {
        b.set_certificate(&pki.client.cert).unwrap();
        b.set_private_key(&pki.client.key).unwrap();
    }
    let sessions = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&sessions);
    b.set_session_cache_mode(SslSessionCacheMode::CLIENT);
    b.set_new_session_callback(move |_, s| store.lock().unwrap().push(s));
    configure(&mut b);
    Client {
        ctx: b.build(),
        sessions,
    }
}

impl Client {
    /// The session (or ticket) the client was given last.
    fn last_session(&self) -> SslSession {
        let sessions = self.sessions.lock().unwrap();
        sessions.last().cloned().expect("a session")
    }
}

/// A server context with `ssl_session_cache`.
fn with_session_cache(pki: &Pki) -> ContextHolder {
    let s = TlsSettings {
        session_cache: true,
        ..settings(pki)
    };
    ContextHolder::new(&s).unwrap()
}

fn settings(pki: &Pki) -> TlsSettings {
    TlsSettings {
        enabled: true,
        chain_cert: Some(pki.server.cert_path.clone()),
        key: Some(pki.server.key_path.clone()),
        ca_cert: Some(pki.ca.cert_path.clone()),
        ..TlsSettings::default()
    }
}

struct Conn {
    client: SslStream<Pipe>,
    server: TlsSession,
    server_plain: Vec<u8>,
    client_plain: Vec<u8>,
}

impl Conn {
    fn new(holder: &ContextHolder, client: &Client, listener: ListenerTls) -> Conn {
        Conn::resuming(holder, client, listener, None)
    }

    fn resuming(
        holder: &ContextHolder,
        client: &Client,
        listener: ListenerTls,
        session: Option<&SslSession>,
    ) -> Conn {
        let mut ssl = Ssl::new(&client.ctx).unwrap();
        ssl.set_connect_state();
        ssl.set_hostname("localhost").unwrap();
        if let Some(s) = session {
            // SAFETY: the session came from this same client context.
            unsafe { ssl.set_session(s).unwrap() };
        }
        Conn {
            client: SslStream::new(ssl, Pipe::default()).unwrap(),
            server: holder.new_session(listener).unwrap(),
            server_plain: Vec::new(),
            client_plain: Vec::new(),
        }
    }

    /// Moves bytes both ways until neither side has anything to say.
    fn pump(&mut self) -> Result<(), TlsError> {
        loop {
            self.client_step();
            let c2s = std::mem::take(&mut self.client.get_mut().outgoing);
            if !c2s.is_empty() {
                self.server.feed_ciphertext(&c2s);
            }
            let result = self.server.read_plaintext(&mut self.server_plain);
            let s2c = self.flush_server();
            result?;
            if c2s.is_empty() && s2c == 0 {
                return Ok(());
            }
        }
    }

    fn client_step(&mut self) {
        if !self.client.ssl().is_init_finished() {
            let _ = self.client.do_handshake();
            if !self.client.ssl().is_init_finished() {
                return;
            }
        }
        let mut buf = [0u8; 16384];
        while let Ok(n) = self.client.ssl_read(&mut buf) {
            self.client_plain.extend_from_slice(&buf[..n]);
        }
    }

    /// The client encrypts `plain`; returns the records, not yet given to the server.
    fn client_records(&mut self, plain: &[u8]) -> Vec<u8> {
        self.client.ssl_write(plain).unwrap();
        std::mem::take(&mut self.client.get_mut().outgoing)
    }

    fn flush_server(&mut self) -> usize {
        let out = self.server.take_ciphertext().to_vec();
        self.server.consume_ciphertext(out.len());
        self.client.get_mut().incoming.extend_from_slice(&out);
        out.len()
    }

    /// The client sends `request`, the server reads it and answers `reply`, the client reads
    /// that: both directions' records after the handshake.
    fn roundtrip(&mut self, request: &[u8], reply: &[u8]) {
        self.server_plain.clear();
        self.client_plain.clear();
        self.client.ssl_write(request).unwrap();
        self.pump().unwrap();
        assert_eq!(self.server_plain, request);
        let progress = self.server.write_plaintext_batch(&[reply]).unwrap();
        assert_eq!((progress.accepted, progress.blocked), (reply.len(), None));
        self.flush_server();
        self.pump().unwrap();
        assert_eq!(self.client_plain, reply);
    }

    fn established(holder: &ContextHolder, client: &Client) -> Conn {
        let mut conn = Conn::new(holder, client, ListenerTls::Default);
        conn.pump().unwrap();
        assert!(conn.server.is_established());
        conn
    }
}

fn app_data_records(ciphertext: &[u8]) -> usize {
    let mut rest = ciphertext;
    let mut count = 0;
    while rest.len() >= 5 {
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        count += usize::from(rest[0] == 23);
        rest = &rest[(5 + len).min(rest.len())..];
    }
    count
}

fn serial(conn: &Conn) -> u32 {
    let cert = conn.client.ssl().peer_certificate().unwrap();
    cert.serial_number()
        .to_bn()
        .unwrap()
        .to_dec_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn handshakes_with_tls12_and_tls13() {
    let pki = Pki::new();
    let holder = ContextHolder::new(&settings(&pki)).unwrap();
    for (max, expect) in [
        (SslVersion::TLS1_2, "TLSv1.2"),
        (SslVersion::TLS1_3, "TLSv1.3"),
    ] {
        let mut conn = Conn::established(&holder, &client(&pki, Some(max), false));
        assert_eq!(conn.server.negotiated().unwrap().0, expect);
        // The records are rampart's own after the handshake, in both versions (AEAD suites).
        assert!(conn.server.is_handed_over(), "{max:?}");
        assert_eq!(conn.server.peer_identity(), None);
        conn.roundtrip(b"version\r\n", b"VERSION 1.6.18\r\n");
    }
    assert_eq!(
        holder.counters().handshake_errors.load(Ordering::Relaxed),
        0
    );
}

#[test]
fn verified_client_certificate_gives_identity() {
    let pki = Pki::new();
    let s = TlsSettings {
        verify_mode: VerifyMode::Require,
        ..settings(&pki)
    };
    let holder = ContextHolder::new(&s).unwrap();
    let conn = Conn::established(&holder, &client(&pki, None, true));
    let id = conn.server.peer_identity().unwrap();
    assert_eq!(id.common_name.as_deref(), Some("client"));
    assert_eq!(id.dns_names, ["client.example"]);
    assert_eq!(id.ip_addresses, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
}

#[test]
fn verify_require_refuses_a_client_without_certificate_and_counts_it() {
    let pki = Pki::new();
    let s = TlsSettings {
        verify_mode: VerifyMode::Require,
        ..settings(&pki)
    };
    let holder = ContextHolder::new(&s).unwrap();
    for max in [SslVersion::TLS1_2, SslVersion::TLS1_3] {
        let mut conn = Conn::new(
            &holder,
            &client(&pki, Some(max), false),
            ListenerTls::Default,
        );
        assert!(matches!(conn.pump(), Err(TlsError::Handshake(_))));
        assert!(conn.server.is_closed());
    }
    assert_eq!(
        holder.counters().handshake_errors.load(Ordering::Relaxed),
        2
    );
}

#[test]
fn listener_prefixes_override_verify_mode() {
    let pki = Pki::new();
    let none = ContextHolder::new(&settings(&pki)).unwrap();
    let mut mtls = Conn::new(&none, &client(&pki, None, false), ListenerTls::Mtls);
    assert!(matches!(mtls.pump(), Err(TlsError::Handshake(_))));
    let require = ContextHolder::new(&TlsSettings {
        verify_mode: VerifyMode::Require,
        ..settings(&pki)
    })
    .unwrap();
    let mut btls = Conn::new(&require, &client(&pki, None, false), ListenerTls::Btls);
    btls.pump().unwrap();
    assert!(btls.server.is_established());
}

#[test]
fn min_version_tls13_refuses_a_tls12_client() {
    let pki = Pki::new();
    let s = TlsSettings {
        min_version: MinVersion::Tls13,
        ..settings(&pki)
    };
    let holder = ContextHolder::new(&s).unwrap();
    let mut conn = Conn::new(
        &holder,
        &client(&pki, Some(SslVersion::TLS1_2), false),
        ListenerTls::Default,
    );
    assert!(matches!(conn.pump(), Err(TlsError::Handshake(_))));
    assert_eq!(
        holder.counters().handshake_errors.load(Ordering::Relaxed),
        1
    );
}

#[test]
fn junk_before_handshake_yields_no_plaintext_and_counts() {
    let pki = Pki::new();
    let holder = ContextHolder::new(&settings(&pki)).unwrap();
    let mut session = holder.new_session(ListenerTls::Default).unwrap();
    session.feed_ciphertext(b"get foo\r\n");
    let mut out = Vec::new();
    assert!(matches!(
        session.read_plaintext(&mut out),
        Err(TlsError::Handshake(_))
    ));
    assert!(out.is_empty());
    assert!(session.is_closed());
    assert_eq!(
        holder.counters().handshake_errors.load(Ordering::Relaxed),
        1
    );
    // Fed after closing: ignored, still nothing.
    session.feed_ciphertext(b"more");
    assert_eq!(session.read_plaintext(&mut out).unwrap().next, Next::Closed);
    assert!(out.is_empty());
}

#[test]
fn pipelined_requests_in_one_write_all_come_out_of_one_read() {
    let pki = Pki::new();
    let holder = ContextHolder::new(&settings(&pki)).unwrap();
    let mut conn = Conn::established(&holder, &client(&pki, None, false));
    let mut requests = Vec::new();
    for i in 0..1000 {
        requests.extend_from_slice(format!("set key{i} 0 0 10\r\n0123456789\r\n").as_bytes());
    }
    let wire = conn.client_records(&requests);
    assert!(
        app_data_records(&wire) > 1,
        "several records in one socket read"
    );
    conn.server.feed_ciphertext(&wire);
    let progress = conn.server.read_plaintext(&mut conn.server_plain).unwrap();
    assert_eq!(progress.plaintext_bytes, requests.len());
    assert_eq!(progress.next, Next::WantRead);
    assert_eq!(conn.server_plain, requests);
}

#[test]
fn requests_arriving_with_the_client_finished_are_read_at_once() {
    let pki = Pki::new();
    let holder = ContextHolder::new(&settings(&pki)).unwrap();
    let mut conn = Conn::new(
        &holder,
        &client(&pki, Some(SslVersion::TLS1_3), false),
        ListenerTls::Default,
    );
    let _ = conn.client.do_handshake(); // ClientHello
    let hello = std::mem::take(&mut conn.client.get_mut().outgoing);
    conn.server.feed_ciphertext(&hello);
    let p = conn.server.read_plaintext(&mut conn.server_plain).unwrap();
    assert_eq!(p.next, Next::WantRead);
    conn.flush_server();
    conn.client.do_handshake().unwrap(); // Finished
    let flight = conn.client_records(b"get a\r\n");
    conn.server.feed_ciphertext(&flight);
    let p = conn.server.read_plaintext(&mut conn.server_plain).unwrap();
    assert!(conn.server.is_established());
    assert_eq!((p.plaintext_bytes, p.next), (7, Next::WantRead));
    assert_eq!(conn.server_plain, b"get a\r\n");
}

#[test]
fn sixteen_replies_become_one_record() {
    let pki = Pki::new();
    let holder = ContextHolder::new(&settings(&pki)).unwrap();
    let mut conn = Conn::established(&holder, &client(&pki, None, false));
    let replies: Vec<Vec<u8>> = (0..16)
        .map(|i| format!("VALUE key{i} 0 10\r\n0123456789\r\nEND\r\n").into_bytes())
        .collect();
    let slices: Vec<&[u8]> = replies.iter().map(Vec::as_slice).collect();
    let w = conn.server.write_plaintext_batch(&slices).unwrap();
    assert_eq!(w.blocked, None);
    assert_eq!(w.accepted, replies.iter().map(Vec::len).sum::<usize>());
    assert_eq!(app_data_records(conn.server.take_ciphertext()), 1);
    conn.flush_server();
    conn.client_step();
    assert_eq!(conn.client_plain, replies.concat());
    // An idle connection gives its buffers back and still works afterwards.
    conn.server.shrink_idle();
    conn.server
        .write_plaintext_batch(&[&b"END\r\n"[..]])
        .unwrap();
    conn.flush_server();
    conn.client_step();
    assert!(conn.client_plain.ends_with(b"END\r\n"));
}

#[test]
fn holder_is_shared_across_executors_and_sessions_can_move() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<ContextHolder>();
    send::<TlsSession>();
}

#[test]
fn partial_ciphertext_consumption_resumes_exactly() {
    let pki = Pki::new();
    let holder = ContextHolder::new(&settings(&pki)).unwrap();
    let mut conn = Conn::established(&holder, &client(&pki, None, false));
    let big: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    conn.server
        .write_plaintext_batch(&[&big[..25_000]])
        .unwrap();
    let mut written = 0;
    for round in 0.. {
        let pending = conn.server.take_ciphertext();
        if pending.is_empty() {
            break;
        }
        let n = pending.len().min(7 + round % 13);
        let chunk = pending[..n].to_vec();
        conn.server.consume_ciphertext(n);
        conn.client.get_mut().incoming.extend_from_slice(&chunk);
        written += n;
        if round == 100 {
            // More replies while a socket write is half done go behind it.
            conn.server
                .write_plaintext_batch(&[&big[25_000..]])
                .unwrap();
        }
    }
    assert!(written > big.len());
    conn.client_step();
    assert_eq!(conn.client_plain, big);
}

#[test]
fn full_ciphertext_buffer_is_want_write_and_resumes() {
    let pki = Pki::new();
    let holder = ContextHolder::new(&settings(&pki)).unwrap();
    let mut conn = Conn::established(&holder, &client(&pki, None, false));
    let big = vec![b'x'; 6 * 1024 * 1024];
    let mut offset = 0;
    let mut blocked = 0;
    while offset < big.len() {
        let w = conn
            .server
            .write_plaintext_batch(&[&big[offset..]])
            .unwrap();
        offset += w.accepted;
        if w.blocked.is_some() {
            assert_eq!(w.blocked, Some(Next::WantWrite));
            blocked += 1;
        }
        conn.flush_server();
        conn.client_step();
    }
    // Whatever is still staged goes out on an empty call.
    while conn
        .server
        .write_plaintext_batch::<&[u8]>(&[])
        .unwrap()
        .blocked
        .is_some()
    {
        conn.flush_server();
    }
    conn.flush_server();
    conn.client_step();
    assert!(blocked >= 1);
    assert_eq!(conn.client_plain.len(), big.len());
}

#[test]
fn garbage_after_handshake_is_a_protocol_error() {
    let pki = Pki::new();
    let holder = ContextHolder::new(&settings(&pki)).unwrap();
    let mut conn = Conn::established(&holder, &client(&pki, None, false));
    conn.server
        .feed_ciphertext(&[23, 3, 3, 0, 5, 1, 2, 3, 4, 5]);
    assert!(matches!(
        conn.server.read_plaintext(&mut Vec::new()),
        Err(TlsError::Protocol(_))
    ));
    assert!(conn.server.is_closed());
    assert_eq!(holder.counters().proto_errors.load(Ordering::Relaxed), 1);
    assert_eq!(
        holder.counters().handshake_errors.load(Ordering::Relaxed),
        0
    );
}

unsafe extern "C" {
    // OpenSSL 1.1.1 and later, not bound by openssl-sys. <openssl/ssl.h>:
    // int SSL_key_update(SSL *s, int updatetype).
    fn SSL_key_update(ssl: *mut openssl_sys::SSL, updatetype: std::ffi::c_int) -> std::ffi::c_int;
}

/// The client schedules a KeyUpdate (sent with its next record), asking for ours if
/// `requested`.
fn client_key_update(conn: &mut Conn, requested: bool) {
    use foreign_types::ForeignTypeRef;
    // SAFETY: the client SSL is live for the call; the test owns it and nothing else uses it.
    let ok = unsafe { SSL_key_update(conn.client.ssl().as_ptr(), c_int_from(requested)) };
    assert_eq!(ok, 1);
}

fn c_int_from(requested: bool) -> std::ffi::c_int {
    // SSL_KEY_UPDATE_REQUESTED is 1, SSL_KEY_UPDATE_NOT_REQUESTED 0.
    std::ffi::c_int::from(requested)
}

#[test]
fn every_tls13_suite_hands_over_and_carries_records_both_ways() {
    let pki = Pki::new();
    let holder = ContextHolder::new(&settings(&pki)).unwrap();
    for suite in [
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    ] {
        let c = client_with(&pki, None, false, |b| b.set_ciphersuites(suite).unwrap());
        let mut conn = Conn::established(&holder, &c);
        assert_eq!(conn.server.negotiated(), Some(("TLSv1.3", suite)));
        assert!(conn.server.is_handed_over(), "{suite}");
        assert!(conn.server.ssl().is_none(), "OpenSSL's connection is freed");
        conn.roundtrip(b"get k\r\n", b"END\r\n");
        // Past one record each way, and a reply in many slices.
        let request: Vec<u8> = (0..70_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let reply: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        conn.roundtrip(&request, &reply);
        let slices: Vec<&[u8]> = reply.chunks(333).collect();
        conn.client_plain.clear();
        conn.server.write_plaintext_batch(&slices).unwrap();
        conn.flush_server();
        conn.pump().unwrap();
        assert_eq!(conn.client_plain, reply);
    }
}

#[test]
fn tls12_aead_suites_hand_over_and_cbc_ones_stay_with_openssl() {
    let pki = Pki::new();
    let holder = ContextHolder::new(&settings(&pki)).unwrap();
    for (list, handed_over) in [
        (
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
            true,
        ),
        (
            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384",
            true,
        ),
        (
            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305",
            true,
        ),
        ("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA", false),
    ] {
        let c = client_with(&pki, Some(SslVersion::TLS1_2), false, |b| {
            b.set_cipher_list(list).unwrap();
        });
        let mut conn = Conn::established(&holder, &c);
        assert_eq!(conn.server.negotiated().unwrap().0, "TLSv1.2");
        assert_eq!(conn.server.is_handed_over(), handed_over, "{list}");
        let request: Vec<u8> = (0..40_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let reply: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        conn.roundtrip(&request, &reply);
        conn.roundtrip(b"get k\r\n", b"END\r\n");
    }
    assert_eq!(holder.counters().proto_errors.load(Ordering::Relaxed), 0);
}

#[test]
fn the_clients_key_updates_are_followed_and_a_requested_one_answered() {
    let pki = Pki::new();
    let holder = ContextHolder::new(&settings(&pki)).unwrap();
    let mut conn = Conn::established(&holder, &client(&pki, None, false));
    assert!(conn.server.is_handed_over());
    for requested in [true, false, true] {
        client_key_update(&mut conn, requested);
        let wire = conn.client_records(b"get k\r\n");
        conn.server.feed_ciphertext(&wire);
        conn.server_plain.clear();
        conn.server.read_plaintext(&mut conn.server_plain).unwrap();
        assert_eq!(conn.server_plain, b"get k\r\n");
        conn.server
            .write_plaintext_batch(&[&b"END\r\n"[..]])
            .unwrap();
        // Our KeyUpdate, then the reply; none unasked.
        let records = app_data_records(conn.server.take_ciphertext());
        assert_eq!(records, 1 + usize::from(requested), "{requested}");
        conn.client_plain.clear();
        conn.flush_server();
        conn.client_step();
        assert_eq!(conn.client_plain, b"END\r\n");
        conn.roundtrip(b"get l\r\n", b"END\r\n");
    }
    assert_eq!(holder.counters().proto_errors.load(Ordering::Relaxed), 0);
}

#[test]
fn a_tampered_record_gets_bad_record_mac_and_closes() {
    let pki = Pki::new();
    let holder = ContextHolder::new(&settings(&pki)).unwrap();
    let mut conn = Conn::established(&holder, &client(&pki, None, false));
    let mut wire = conn.client_records(b"get k\r\n");
    let last = wire.len() - 1;
    wire[last] ^= 1;
    conn.server.feed_ciphertext(&wire);
    let mut plain = Vec::new();
    let err = conn.server.read_plaintext(&mut plain).unwrap_err();
    assert!(matches!(err, TlsError::Protocol(_)), "{err:?}");
    assert!(plain.is_empty());
    assert!(conn.server.is_closed());
    conn.flush_server();
    let mut buf = [0u8; 64];
    let e = conn.client.ssl_read(&mut buf).unwrap_err();
    assert!(e.to_string().contains("bad record mac"), "{e}");
    assert_eq!(holder.counters().proto_errors.load(Ordering::Relaxed), 1);
}

#[test]
fn shutdown_both_ways() {
    let pki = Pki::new();
    let holder = ContextHolder::new(&settings(&pki)).unwrap();
    // We close first, the peer answers.
    let mut conn = Conn::established(&holder, &client(&pki, None, false));
    assert_eq!(conn.server.shutdown(), Next::WantRead);
    conn.flush_server();
    let mut buf = [0u8; 64];
    let e = conn.client.ssl_read(&mut buf).unwrap_err();
    assert_eq!(e.code(), ErrorCode::ZERO_RETURN);
    conn.client.shutdown().unwrap();
    conn.pump().unwrap();
    assert!(conn.server.is_closed());
    // The peer closes first; replies can still go out, then ours.
    let mut conn = Conn::established(&holder, &client(&pki, None, false));
    conn.client.ssl_write(b"get a\r\n").unwrap();
    conn.client.shutdown().unwrap();
    let wire = std::mem::take(&mut conn.client.get_mut().outgoing);
    conn.server.feed_ciphertext(&wire);
    let p = conn.server.read_plaintext(&mut conn.server_plain).unwrap();
    assert_eq!((p.plaintext_bytes, p.next), (7, Next::PeerClosed));
    conn.server
        .write_plaintext_batch(&[&b"END\r\n"[..]])
        .unwrap();
    assert_eq!(conn.server.shutdown(), Next::Closed);
    conn.flush_server();
    conn.client_step();
    assert_eq!(conn.client_plain, b"END\r\n");
}

#[test]
fn refresh_failures_give_memcached_lines_and_keep_the_old_context() {
    let pki = Pki::new();
    let good = settings(&pki);
    let holder = ContextHolder::new(&good).unwrap();
    let before = holder.current();
    let junk = pki.file("junk.pem", b"junk\n");
    let missing = pki.dir.join("missing.pem");
    let cases = [
        (
            TlsSettings {
                chain_cert: Some(junk.clone()),
                ..good.clone()
            },
            format!(
                "Error loading the certificate chain: {} : error:0480006C:PEM routines::no start line",
                junk.display()
            ),
        ),
        (
            TlsSettings {
                key: Some(pki.server2.key_path.clone()),
                ..good.clone()
            },
            format!(
                "Error loading the key: {} : error:05800074:x509 certificate routines::key values mismatch",
                pki.server2.key_path.display()
            ),
        ),
        (
            TlsSettings {
                ca_cert: Some(missing.clone()),
                ..good.clone()
            },
            format!(
                "Error loading the CA certificate: {} : error:80000002:system library::No such file or directory",
                missing.display()
            ),
        ),
        (
            TlsSettings {
                ca_cert: Some(junk.clone()),
                ..good.clone()
            },
            format!(
                "Error loading the CA certificate: {} : error:05800088:x509 certificate routines::no certificate or crl found",
                junk.display()
            ),
        ),
    ];
    for (s, line) in cases {
        assert_eq!(holder.refresh(&s).unwrap_err().to_string(), line);
        assert!(Arc::ptr_eq(&before, &holder.current()));
    }
    let conn = Conn::established(&holder, &client(&pki, None, false));
    assert_eq!(serial(&conn), 100);
}

#[test]
fn refresh_swaps_for_new_sessions_and_open_ones_keep_working() {
    let pki = Pki::new();
    let holder = ContextHolder::new(&settings(&pki)).unwrap();
    let c = client(&pki, None, false);
    let mut old = Conn::established(&holder, &c);
    assert_eq!(serial(&old), 100);
    let rotated = TlsSettings {
        chain_cert: Some(pki.server2.cert_path.clone()),
        key: Some(pki.server2.key_path.clone()),
        ..settings(&pki)
    };
    holder.refresh(&rotated).unwrap();
    assert_eq!(holder.time_since_refresh_secs(), 0);
    let new = Conn::established(&holder, &c);
    assert_eq!(serial(&new), 200);
    old.client.ssl_write(b"get a\r\n").unwrap();
    old.pump().unwrap();
    assert_eq!(old.server_plain, b"get a\r\n");
    old.server
        .write_plaintext_batch(&[&b"END\r\n"[..]])
        .unwrap();
    old.pump().unwrap();
    assert_eq!(old.client_plain, b"END\r\n");
}

#[test]
fn sessions_resume_from_tickets_and_are_counted() {
    let pki = Pki::new();
    let holder = with_session_cache(&pki);
    for max in [SslVersion::TLS1_2, SslVersion::TLS1_3] {
        let c = client(&pki, Some(max), false);
        let mut first = Conn::established(&holder, &c);
        assert!(!first.server.session_reused());
        first.roundtrip(b"get k\r\n", b"END\r\n");
        let session = c.last_session();
        let mut second = Conn::resuming(&holder, &c, ListenerTls::Default, Some(&session));
        second.pump().unwrap();
        assert!(second.server.session_reused(), "{max:?}");
        assert!(second.server.is_handed_over(), "{max:?}");
        second.roundtrip(b"get k\r\n", b"END\r\n");
    }
    assert!(holder.counters().new_sessions.load(Ordering::Relaxed) >= 2);
    let mut stats = Vec::new();
    holder.stats(&mut stats, |out, name, value| {
        out.extend_from_slice(format!("STAT {name} {value}\r\n").as_bytes())
    });
    let stats = String::from_utf8(stats).unwrap();
    assert!(stats.starts_with("STAT ssl_new_sessions "), "{stats}");
    assert!(stats.contains("STAT ssl_handshake_errors 0\r\nSTAT ssl_proto_errors 0\r\n"));
    assert!(stats.ends_with("STAT time_since_server_cert_refresh 0\r\n"));
}

#[test]
fn session_ids_resume_from_the_cache_until_a_connection_fails() {
    let pki = Pki::new();
    let holder = with_session_cache(&pki);
    // An AEAD suite (the record layer takes over) and a CBC one (OpenSSL keeps the records).
    for (ciphers, handed_over) in [(None, true), (Some("ECDHE-ECDSA-AES128-SHA256"), false)] {
        // No tickets: TLS 1.2 resumption by session id, from the server's cache.
        let c = client_with(&pki, Some(SslVersion::TLS1_2), false, |b| {
            b.set_options(SslOptions::NO_TICKET);
            if let Some(list) = ciphers {
                b.set_cipher_list(list).unwrap();
            }
        });
        let mut first = Conn::established(&holder, &c);
        assert_eq!(first.server.is_handed_over(), handed_over, "{ciphers:?}");
        first.roundtrip(b"get k\r\n", b"END\r\n");
        // Both sides end cleanly (OpenSSL, on either side, takes a connection freed
        // without a shutdown for a failed one and marks its session not resumable). The
        // server's is how conn::tls ends every connection: close_notify, then the drop.
        first.server.shutdown();
        first.client.shutdown().unwrap();
        drop(first);
        let session = c.last_session();
        assert!(!session.id().is_empty());
        let mut second = Conn::resuming(&holder, &c, ListenerTls::Default, Some(&session));
        second.pump().unwrap();
        assert!(second.server.session_reused(), "{ciphers:?}");
        assert_eq!(second.server.is_handed_over(), handed_over, "{ciphers:?}");
        second.roundtrip(b"get k\r\n", b"END\r\n");
        // A record that fails its check ends the connection with a fatal alert, and its
        // session is not resumed again (RFC 5246 7.2.2).
        let mut forged = second.client_records(b"get k\r\n");
        *forged.last_mut().unwrap() ^= 1;
        second.server.feed_ciphertext(&forged);
        assert!(matches!(
            second.server.read_plaintext(&mut Vec::new()),
            Err(TlsError::Protocol(_))
        ));
        let mut third = Conn::resuming(&holder, &c, ListenerTls::Default, Some(&session));
        third.pump().unwrap();
        assert!(third.server.is_established());
        assert!(!third.server.session_reused(), "{ciphers:?}");
    }
}

#[test]
fn tickets_resume_without_the_session_cache() {
    let pki = Pki::new();
    let holder = ContextHolder::new(&settings(&pki)).unwrap();
    for max in [SslVersion::TLS1_2, SslVersion::TLS1_3] {
        let c = client(&pki, Some(max), false);
        let _first = Conn::established(&holder, &c);
        let session = c.last_session();
        let mut second = Conn::resuming(&holder, &c, ListenerTls::Default, Some(&session));
        second.pump().unwrap();
        assert!(second.server.session_reused(), "{max:?}");
        assert!(second.server.is_handed_over(), "{max:?}");
        second.roundtrip(b"get k\r\n", b"END\r\n");
    }
    // memcached reports ssl_new_sessions only with the cache.
    let mut stats = Vec::new();
    holder.stats(&mut stats, |out, name, value| {
        out.extend_from_slice(format!("STAT {name} {value}\r\n").as_bytes())
    });
    assert!(
        !String::from_utf8(stats)
            .unwrap()
            .contains("ssl_new_sessions")
    );
}

#[test]
fn startup_errors_match_memcached() {
    let pki = Pki::new();
    let good = settings(&pki);
    let err = |s: TlsSettings| {
        let e = ContextHolder::new(&s).unwrap_err();
        assert_eq!(e.exit_code(), 64);
        e.to_string()
    };
    // `memcached -Z` without ssl_chain_cert / ssl_key hands OpenSSL a NULL path.
    assert_eq!(
        err(TlsSettings {
            chain_cert: None,
            ..good.clone()
        }),
        "Error loading the certificate chain: (null) : error:8000000E:system library::Bad address"
    );
    assert_eq!(
        err(TlsSettings {
            key: None,
            ..good.clone()
        }),
        "Error loading the key: (null) : error:8000000E:system library::Bad address"
    );
    let missing = pki.dir.join("nope.pem");
    assert_eq!(
        err(TlsSettings {
            chain_cert: Some(missing.clone()),
            ..good.clone()
        }),
        format!(
            "Error loading the certificate chain: {} : error:80000002:system library::No such file or directory",
            missing.display()
        )
    );
    assert_eq!(
        err(TlsSettings {
            key_format: KeyFormat::Other(3),
            ..good.clone()
        }),
        format!(
            "Error loading the key: {} : error:0A00007C:SSL routines::bad ssl filetype",
            pki.server.key_path.display()
        )
    );
    assert_eq!(
        err(TlsSettings {
            ciphers: Some("BOGUS".into()),
            ..good.clone()
        }),
        "Error setting the provided cipher(s): BOGUS"
    );
    // A DER key loads with ssl_keyformat=2.
    let der = pki.file("server.der", &pki.server.key.private_key_to_der().unwrap());
    let s = TlsSettings {
        key: Some(der),
        key_format: KeyFormat::Der,
        ..good
    };
    assert!(ContextHolder::new(&s).is_ok());
}

#[test]
fn going_idle_in_the_middle_of_a_record_loses_nothing() {
    let pki = Pki::new();
    let holder = ContextHolder::new(&settings(&pki)).unwrap();
    let mut conn = Conn::established(&holder, &client(&pki, None, false));
    let request = b"get a-key-long-enough-to-split\r\n".repeat(100);
    let wire = conn.client_records(&request);
    // Half a record: OpenSSL holds it (read but not decryptable) when the connection idles.
    let (first, rest) = wire.split_at(wire.len() / 2);
    conn.server.feed_ciphertext(first);
    let progress = conn.server.read_plaintext(&mut conn.server_plain).unwrap();
    assert_eq!(
        (progress.plaintext_bytes, progress.next),
        (0, Next::WantRead)
    );
    conn.server.shrink_idle();
    conn.server.feed_ciphertext(rest);
    let progress = conn.server.read_plaintext(&mut conn.server_plain).unwrap();
    assert_eq!(progress.plaintext_bytes, request.len());
    assert_eq!(conn.server_plain, request);
    // Idle again with nothing held: OpenSSL's buffers go, and both directions still work.
    conn.server.shrink_idle();
    conn.server
        .write_plaintext_batch(&[&b"END\r\n"[..]])
        .unwrap();
    conn.flush_server();
    conn.client_step();
    assert!(conn.client_plain.ends_with(b"END\r\n"));
    let wire = conn.client_records(b"version\r\n");
    conn.server.feed_ciphertext(&wire);
    conn.server.read_plaintext(&mut conn.server_plain).unwrap();
    assert!(conn.server_plain.ends_with(b"version\r\n"));
}
