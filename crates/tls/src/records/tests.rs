//! The record layer against a mirror of itself (the client's side: its keys crossed). The
//! sessions in `crate::tests` check it against OpenSSL's own record layer.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test.

use super::*;

const SUITES: [Suite; 3] = [
    Suite::Aes128GcmSha256,
    Suite::Aes256GcmSha384,
    Suite::Chacha20Poly1305Sha256,
];

fn pair(suite: Suite) -> (RecordLayer, RecordLayer) {
    pair_at(suite, 0, 0)
}

/// (server, client) of a TLS 1.2 connection just after its Finished messages.
fn pair12(suite: Suite) -> (RecordLayer, RecordLayer) {
    pair12_at(suite, 1)
}

/// A TLS 1.2 pair with both directions at sequence number `seq`.
fn pair12_at(suite: Suite, seq: u64) -> (RecordLayer, RecordLayer) {
    let (master, client_random, server_random) = ([7u8; 48], [1u8; 32], [2u8; 32]);
    let side = |server| {
        RecordLayer::new_tls12(
            suite,
            &master,
            &client_random,
            &server_random,
            (seq, seq),
            server,
        )
        .unwrap()
    };
    (side(true), side(false))
}

/// Both versions' pairs in every suite.
fn every_pair() -> Vec<(String, RecordLayer, RecordLayer)> {
    let mut pairs = Vec::new();
    for suite in SUITES {
        let (server, client) = pair(suite);
        pairs.push((format!("1.3 {suite:?}"), server, client));
        let (server, client) = pair12(suite);
        pairs.push((format!("1.2 {suite:?}"), server, client));
    }
    pairs
}

fn seal_typed(layer: &mut RecordLayer, content_type: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    super::seal_typed(layer, content_type, bytes, &mut out).unwrap();
    out
}

fn key_update(layer: &mut RecordLayer, requested: bool) -> Vec<u8> {
    let mut out = Vec::new();
    send_key_update(layer, requested, &mut out).unwrap();
    out
}

/// Opens every record of `input`, fed `cut` bytes at a time as a socket might deliver it.
fn open_all(layer: &mut RecordLayer, input: &[u8], cut: usize) -> (Vec<u8>, Vec<Opened>) {
    let mut pending = Vec::new();
    let mut plain = Vec::new();
    let mut events = Vec::new();
    for piece in input.chunks(cut.max(1)) {
        pending.extend_from_slice(piece);
        while let Some((taken, opened)) = layer.open(&pending, &mut plain).unwrap() {
            pending.drain(..taken);
            events.push(opened);
        }
    }
    assert!(pending.is_empty(), "{} bytes left unopened", pending.len());
    (plain, events)
}

fn open_err(layer: &mut RecordLayer, input: &[u8]) -> Fatal {
    let mut plain = Vec::new();
    let err = layer.open(input, &mut plain).unwrap_err();
    assert!(plain.is_empty(), "nothing of a failed record is given out");
    err
}

#[test]
fn what_one_side_seals_the_other_opens_in_every_suite_however_it_is_cut() {
    let plain: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for cut in [1, 5, 6, 4096, 16_405, 100_000] {
        for (suite, mut server, mut client) in every_pair() {
            let mut wire = Vec::new();
            seal_all(&mut client, &plain, MAX_PLAINTEXT, &mut wire).unwrap();
            seal_all(&mut client, b"", 1, &mut wire).unwrap();
            let (got, events) = open_all(&mut server, &wire, cut);
            assert_eq!(got, plain, "{suite:?} cut {cut}");
            assert_eq!(events, [Opened::Data; 4], "{suite:?}");
            // And back, at the sequence numbers both sides reached.
            let mut back = Vec::new();
            seal_all(&mut server, &plain[..100], 7, &mut back).unwrap();
            assert_eq!(open_all(&mut client, &back, cut).0, &plain[..100]);
        }
    }
}

#[test]
fn records_are_the_size_and_shape_tls_13_gives_them() {
    let (mut server, _) = pair(Suite::Aes128GcmSha256);
    let mut out = Vec::new();
    seal_all(
        &mut server,
        &[b'a'; MAX_PLAINTEXT + 1],
        MAX_PLAINTEXT,
        &mut out,
    )
    .unwrap();
    // Header, the data, its content type, the tag.
    let first = HEADER + MAX_PLAINTEXT + 1 + TAG;
    assert_eq!(out.len(), first + HEADER + 1 + 1 + TAG);
    assert_eq!(out[..5], [23, 3, 3, 0x40, 0x11]);
    assert_eq!(out[first..first + 5], [23, 3, 3, 0, 18]);
}

#[test]
fn a_requested_key_update_is_answered_once_before_the_next_record() {
    for suite in SUITES {
        let (mut server, mut client) = pair(suite);
        let mut wire = key_update(&mut client, true);
        wire.extend(key_update(&mut client, true));
        seal_all(&mut client, b"get k\r\n", 64, &mut wire).unwrap();
        let (got, events) = open_all(&mut server, &wire, 3);
        assert_eq!(got, b"get k\r\n");
        assert_eq!(events, [Opened::KeyUpdate, Opened::KeyUpdate, Opened::Data]);
        assert!(server.update_due());

        let mut reply = Vec::new();
        seal_all(&mut server, b"END\r\n", 64, &mut reply).unwrap();
        seal_all(&mut server, b"END\r\n", 64, &mut reply).unwrap();
        assert!(!server.update_due());
        let (got, events) = open_all(&mut client, &reply, 1);
        assert_eq!(got, b"END\r\nEND\r\n");
        assert_eq!(events, [Opened::KeyUpdate, Opened::Data, Opened::Data]);
        // Nobody asked the client to update: it did not.
        assert!(!client.update_due());
    }
}

#[test]
fn an_update_not_requested_changes_only_the_peers_keys() {
    let (mut server, mut client) = pair(Suite::Aes256GcmSha384);
    let mut wire = key_update(&mut client, false);
    seal_all(&mut client, b"a", 64, &mut wire).unwrap();
    assert_eq!(open_all(&mut server, &wire, 100).0, b"a");
    assert!(!server.update_due());
    let mut reply = Vec::new();
    seal_all(&mut server, b"b", 64, &mut reply).unwrap();
    assert_eq!(
        open_all(&mut client, &reply, 100),
        (b"b".to_vec(), vec![Opened::Data])
    );
}

#[test]
fn close_notify_ends_the_peers_side_and_other_alerts_end_the_connection() {
    let (mut server, mut client) = pair(Suite::Aes128GcmSha256);
    let mut out = Vec::new();
    client.seal_alert(&mut out, CLOSE_NOTIFY).unwrap();
    assert_eq!(open_all(&mut server, &out, 100).1, [Opened::PeerClosed]);

    let (mut server, mut client) = pair(Suite::Aes128GcmSha256);
    let mut out = Vec::new();
    client.seal_alert(&mut out, 40).unwrap();
    let err = open_err(&mut server, &out);
    assert_eq!(err.alert, None, "no alert answers an alert");
    assert!(err.detail.contains("40"), "{err:?}");
}

#[test]
fn tampering_anywhere_fails_authentication() {
    for n in 0..every_pair().len() {
        let (name, _, mut client) = every_pair().swap_remove(n);
        let mut wire = Vec::new();
        seal_all(&mut client, b"set k 0 0 1\r\nv\r\n", 64, &mut wire).unwrap();
        for at in 0..wire.len() {
            let mut bad = wire.clone();
            bad[at] ^= 0x20;
            let (_, mut server, _) = every_pair().swap_remove(n);
            let mut plain = Vec::new();
            match server.open(&bad, &mut plain) {
                // A longer length waits for bytes that never come; nothing is given out.
                Ok(None) => assert!((3..5).contains(&at)),
                Ok(Some(opened)) => panic!("byte {at} altered, yet {opened:?}"),
                Err(e) => {
                    assert!(plain.is_empty());
                    let expected = match at {
                        0 => UNEXPECTED_MESSAGE,
                        1 | 2 if name.starts_with("1.2") => PROTOCOL_VERSION,
                        _ => BAD_RECORD_MAC,
                    };
                    assert_eq!(e.alert, Some(expected), "byte {at}: {e:?}");
                }
            }
        }
    }
}

#[test]
fn a_record_replayed_or_from_the_other_direction_fails() {
    let (mut server, mut client) = pair(Suite::Aes128GcmSha256);
    let mut first = Vec::new();
    seal_all(&mut client, b"a", 64, &mut first).unwrap();
    assert_eq!(open_all(&mut server, &first, 100).0, b"a");
    assert_eq!(open_err(&mut server, &first).alert, Some(BAD_RECORD_MAC));

    let (mut server, _) = pair(Suite::Aes128GcmSha256);
    let mut own = Vec::new();
    seal_all(&mut server, b"a", 64, &mut own).unwrap();
    assert_eq!(open_err(&mut server, &own).alert, Some(BAD_RECORD_MAC));
}

#[test]
fn malformed_records_get_the_alert_rfc_8446_names() {
    let (mut server, mut client) = pair(Suite::Aes128GcmSha256);
    let cases: Vec<(Vec<u8>, u8)> = vec![
        // Only padding: no content type.
        (seal_typed(&mut client, 0, &[]), UNEXPECTED_MESSAGE),
        // A content type TLS 1.3 does not have after the handshake.
        (seal_typed(&mut client, 20, &[1]), UNEXPECTED_MESSAGE),
        // More than 2^14 bytes of plaintext.
        (
            seal_typed(&mut client, DATA, &[1; MAX_PLAINTEXT + 1]),
            RECORD_OVERFLOW,
        ),
        // Handshake messages other than a whole KeyUpdate.
        (
            seal_typed(&mut client, HANDSHAKE, &[4, 0, 0, 0]),
            UNEXPECTED_MESSAGE,
        ),
        (
            seal_typed(&mut client, HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 2]),
            ILLEGAL_PARAMETER,
        ),
        // A KeyUpdate must end where its record ends (RFC 8446 5.1): cut short, or with
        // more after it in the record.
        (
            seal_typed(&mut client, HANDSHAKE, &[KEY_UPDATE, 0, 0, 1]),
            UNEXPECTED_MESSAGE,
        ),
        (
            seal_typed(&mut client, HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0, 24]),
            UNEXPECTED_MESSAGE,
        ),
        (
            seal_typed(&mut client, HANDSHAKE, &[KEY_UPDATE, 0, 0]),
            UNEXPECTED_MESSAGE,
        ),
        // Whole, but not a KeyUpdate's length.
        (
            seal_typed(&mut client, HANDSHAKE, &[KEY_UPDATE, 0, 0, 2, 0, 0]),
            DECODE_ERROR,
        ),
        (seal_typed(&mut client, HANDSHAKE, &[]), UNEXPECTED_MESSAGE),
        (seal_typed(&mut client, ALERT, &[1]), DECODE_ERROR),
    ];
    for (n, (record, alert)) in cases.into_iter().enumerate() {
        // Each case is the client's next record: the server opens them in order.
        let (mut fresh, _) = pair_at(Suite::Aes128GcmSha256, n as u64, 0);
        assert_eq!(open_err(&mut fresh, &record).alert, Some(alert), "case {n}");
    }
    // Padding after the content type is allowed and removed.
    let padded = seal_typed(&mut client, 0, b"ok\x17\0\0");
    let (mut fresh, _) = pair_at(Suite::Aes128GcmSha256, 11, 0);
    assert_eq!(open_all(&mut fresh, &padded, 100).0, b"ok");
    // Headers alone are judged before the body arrives.
    assert_eq!(
        open_err(&mut server, &[22, 3, 3, 0, 1]).alert,
        Some(UNEXPECTED_MESSAGE)
    );
    assert_eq!(
        open_err(&mut server, &[23, 3, 3, 0x41, 1]).alert,
        Some(RECORD_OVERFLOW)
    );
    assert_eq!(
        open_err(
            &mut server,
            &[23, 3, 3, 0, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        )
        .alert,
        Some(BAD_RECORD_MAC)
    );
    assert_eq!(server.open(&[23, 3, 3, 0x41, 0], &mut Vec::new()), Ok(None));
}

#[test]
fn sequence_numbers_never_wrap() {
    // TLS 1.2: no KeyUpdate, so the numbers could run out.
    let (mut server, mut client) = pair12_at(Suite::Aes128GcmSha256, u64::MAX - 1);
    let mut wire = Vec::new();
    seal_all(&mut client, b"last", 64, &mut wire).unwrap();
    assert_eq!(open_all(&mut server, &wire, 100).0, b"last");
    let err = seal_all(&mut client, b"one too many", 64, &mut Vec::new()).unwrap_err();
    assert_eq!(err.alert, Some(INTERNAL_ERROR));
    let err = seal_all(&mut server, b"x", 64, &mut Vec::new());
    assert!(err.is_ok());
    assert!(seal_all(&mut server, b"x", 64, &mut Vec::new()).is_err());
}

#[test]
fn a_tls13_write_key_seals_2_to_the_24_records_then_the_layer_changes_it() {
    for suite in SUITES {
        let (mut server, mut client) = pair_at(suite, 0, RECORDS_PER_KEY - 1);
        assert!(!server.update_due());
        let mut wire = Vec::new();
        seal_all(&mut server, b"last", 64, &mut wire).unwrap();
        assert_eq!(
            open_all(&mut client, &wire, 100),
            (b"last".to_vec(), vec![Opened::Data])
        );
        assert!(server.update_due(), "{suite:?}");
        // Our own KeyUpdate, not requesting the client's, then the record under the new key.
        let mut wire = Vec::new();
        seal_all(&mut server, b"next", 64, &mut wire).unwrap();
        assert!(!server.update_due());
        let (plain, events) = open_all(&mut client, &wire, 7);
        assert_eq!(
            (plain, events),
            (b"next".to_vec(), vec![Opened::KeyUpdate, Opened::Data])
        );
        assert!(!client.update_due(), "the update asked for none back");
        // Alone when nothing follows it, without an empty record after it.
        let (mut server, mut client) = pair_at(suite, 0, RECORDS_PER_KEY);
        let mut wire = Vec::new();
        server.seal_update(&mut wire).unwrap();
        assert_eq!(
            open_all(&mut client, &wire, 100),
            (Vec::new(), vec![Opened::KeyUpdate])
        );
        let sent = wire.len();
        server.seal_update(&mut wire).unwrap();
        assert_eq!(wire.len(), sent, "none due: nothing sealed");
    }
}

#[test]
fn alerts_are_taken_as_openssl_takes_them_and_five_ignored_in_a_row_end_it() {
    for (name, mut server, mut client) in every_pair() {
        for _ in 0..2 {
            for _ in 0..MAX_WARNINGS - 1 {
                let alert = seal_typed(&mut client, ALERT, &[WARNING, USER_CANCELED]);
                assert_eq!(
                    open_all(&mut server, &alert, 100),
                    (vec![], vec![Opened::Data]),
                    "{name}"
                );
            }
            // Any non-empty record but an alert starts the count again.
            let mut wire = Vec::new();
            seal_all(&mut client, b"x", 64, &mut wire).unwrap();
            assert_eq!(open_all(&mut server, &wire, 100).0, b"x", "{name}");
        }
        for _ in 0..MAX_WARNINGS - 1 {
            let alert = seal_typed(&mut client, ALERT, &[WARNING, USER_CANCELED]);
            open_all(&mut server, &alert, 100);
        }
        let fifth = seal_typed(&mut client, ALERT, &[WARNING, USER_CANCELED]);
        assert_eq!(
            open_err(&mut server, &fifth).alert,
            Some(UNEXPECTED_MESSAGE),
            "{name}"
        );
    }
    // TLS 1.3: user_canceled is ignored at any level; every other alert ends the connection
    // (the peer's alert: none is sent back); a KeyUpdate ends a run of alerts too.
    let (mut server, mut client) = pair(Suite::Aes128GcmSha256);
    let fatal_cancel = seal_typed(&mut client, ALERT, &[FATAL, USER_CANCELED]);
    assert_eq!(
        open_all(&mut server, &fatal_cancel, 100).1,
        vec![Opened::Data]
    );
    for _ in 0..3 {
        open_all(
            &mut server,
            &seal_typed(&mut client, ALERT, &[WARNING, USER_CANCELED]),
            100,
        );
    }
    open_all(&mut server, &key_update(&mut client, false), 100);
    open_all(
        &mut server,
        &seal_typed(&mut client, ALERT, &[WARNING, USER_CANCELED]),
        100,
    );
    let other = seal_typed(&mut client, ALERT, &[WARNING, NO_RENEGOTIATION]);
    assert_eq!(open_err(&mut server, &other).alert, None);
    // TLS 1.2: no_renegotiation is a handshake_failure; a fatal-level close_notify ends the
    // connection rather than the peer's side.
    let (mut server, mut client) = pair12(Suite::Aes128GcmSha256);
    let refused = seal_typed(&mut client, ALERT, &[WARNING, NO_RENEGOTIATION]);
    assert_eq!(
        open_err(&mut server, &refused).alert,
        Some(HANDSHAKE_FAILURE)
    );
    let (mut server, mut client) = pair12(Suite::Aes128GcmSha256);
    let fatal_close = seal_typed(&mut client, ALERT, &[FATAL, CLOSE_NOTIFY]);
    assert_eq!(open_err(&mut server, &fatal_close).alert, None);
    let (mut server, mut client) = pair12(Suite::Aes128GcmSha256);
    let close = seal_typed(&mut client, ALERT, &[WARNING, CLOSE_NOTIFY]);
    assert_eq!(
        open_all(&mut server, &close, 100).1,
        vec![Opened::PeerClosed]
    );
}

#[test]
fn secrets_are_at_most_48_bytes() {
    assert!(Secret::new(&[0; 48]).is_some());
    assert!(Secret::new(&[0; 49]).is_none());
    assert_eq!(
        format!("{:?}", Secret::new(&[7; 32]).unwrap()),
        "Secret(32 bytes)"
    );
}

#[test]
fn expand_label_is_hkdf_expand_as_openssl_computes_it() {
    use openssl::md::Md;
    use openssl::pkey::Id;
    use openssl::pkey_ctx::{HkdfMode, PkeyCtx};
    for (suite, md) in [
        (Suite::Aes128GcmSha256, Md::sha256()),
        (Suite::Aes256GcmSha384, Md::sha384()),
    ] {
        let secret: Vec<u8> = (0..suite.secret_len() as u8).collect();
        for (label, len) in [
            (&b"key"[..], 16),
            (b"iv", 12),
            (b"traffic upd", suite.secret_len()),
        ] {
            let mut info = vec![0, len as u8, 6 + label.len() as u8];
            info.extend_from_slice(b"tls13 ");
            info.extend_from_slice(label);
            info.push(0);
            let mut ctx = PkeyCtx::new_id(Id::HKDF).unwrap();
            ctx.derive_init().unwrap();
            ctx.set_hkdf_mode(HkdfMode::EXPAND_ONLY).unwrap();
            ctx.set_hkdf_md(md).unwrap();
            ctx.set_hkdf_key(&secret).unwrap();
            ctx.add_hkdf_info(&info).unwrap();
            let mut expected = vec![0; len];
            ctx.derive(Some(&mut expected)).unwrap();
            assert_eq!(
                expand_label(suite, &secret, label, len).unwrap().get(),
                expected
            );
        }
    }
}

#[test]
fn tls12_records_have_the_real_type_outside_and_aes_gcm_an_explicit_nonce() {
    let (mut server, mut client) = pair12(Suite::Aes128GcmSha256);
    let mut out = Vec::new();
    seal_all(&mut server, b"END\r\n", 64, &mut out).unwrap();
    // Header, the explicit nonce (the sequence number, 1), the data, the tag.
    assert_eq!(out.len(), HEADER + 8 + 5 + TAG);
    assert_eq!(out[..5], [23, 3, 3, 0, 29]);
    assert_eq!(out[5..13], 1u64.to_be_bytes());
    assert_eq!(open_all(&mut client, &out, 100).0, b"END\r\n");
    let mut alert = Vec::new();
    server.seal_alert(&mut alert, CLOSE_NOTIFY).unwrap();
    assert_eq!(alert[0], ALERT);
    assert_eq!(open_all(&mut client, &alert, 100).1, [Opened::PeerClosed]);

    let (_, mut client) = pair12(Suite::Chacha20Poly1305Sha256);
    let mut out = Vec::new();
    seal_all(&mut client, b"x", 64, &mut out).unwrap();
    assert_eq!(out.len(), HEADER + 1 + TAG);
}

#[test]
fn tls12_refuses_renegotiation_and_types_it_does_not_have() {
    for (record_type, alert) in [(HANDSHAKE, UNEXPECTED_MESSAGE), (20, UNEXPECTED_MESSAGE)] {
        let (mut server, mut client) = pair12(Suite::Aes256GcmSha384);
        let record = seal_typed(&mut client, record_type, &[1, 0, 0, 0]);
        assert_eq!(
            open_err(&mut server, &record).alert,
            Some(alert),
            "{record_type}"
        );
    }
    let (mut server, _) = pair12(Suite::Aes256GcmSha384);
    assert_eq!(
        open_err(&mut server, &[23, 3, 3, 0x48, 1]).alert,
        Some(RECORD_OVERFLOW)
    );
    assert_eq!(server.open(&[23, 3, 3, 0x48, 0], &mut Vec::new()), Ok(None));
}
