//! For fuzz targets only (feature `fuzzing`): a holder on a throwaway certificate, and
//! both ends of a record layer (TLS 1.3 or 1.2).

use crate::test_pki::Pki;
use crate::{ContextHolder, TlsSettings};

/// A holder on a freshly generated CA-signed server certificate (the files are deleted once
/// loaded). `adjust` changes the settings first, e.g. to require client certificates.
pub fn throwaway_holder(adjust: impl FnOnce(&mut TlsSettings)) -> ContextHolder {
    let pki = Pki::new();
    let mut settings = TlsSettings {
        enabled: true,
        chain_cert: Some(pki.server.cert_path.clone()),
        key: Some(pki.server.key_path.clone()),
        ca_cert: Some(pki.ca.cert_path.clone()),
        ..TlsSettings::default()
    };
    adjust(&mut settings);
    match ContextHolder::new(&settings) {
        Ok(holder) => holder,
        Err(e) => panic!("throwaway PKI did not load: {e}"),
    }
}

/// Both ends of a connection's record layer (`crate::records`), keys crossed.
#[derive(Debug)]
pub struct RecordEnds {
    server: crate::records::RecordLayer,
    client: crate::records::RecordLayer,
}

/// What [`RecordEnds::server_open`] found in one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerOpened {
    Data,
    PeerClosed,
    KeyUpdate,
}

impl RecordEnds {
    /// `shape` picks one of the three suites (modulo 3) and the version (TLS 1.2 when the
    /// quotient is odd).
    pub fn new(shape: u8) -> RecordEnds {
        use crate::records::{RecordLayer, Suite};
        let suite = match shape % 3 {
            0 => Suite::Aes128GcmSha256,
            1 => Suite::Aes256GcmSha384,
            _ => Suite::Chacha20Poly1305Sha256,
        };
        if (shape / 3) % 2 == 0 {
            let (server, client) = crate::records::pair_at(suite, 0, 0);
            return RecordEnds { server, client };
        }
        let side = |server| match RecordLayer::new_tls12(
            suite,
            &[7; 48],
            &[1; 32],
            &[2; 32],
            (1, 1),
            server,
        ) {
            Ok(layer) => layer,
            Err(e) => panic!("a TLS 1.2 record layer: {e}"),
        };
        RecordEnds {
            server: side(true),
            client: side(false),
        }
    }

    /// Whether the ends speak TLS 1.3 (which has KeyUpdate) rather than TLS 1.2.
    pub fn is_tls13(&self) -> bool {
        self.server.is_tls13()
    }

    /// The client seals `plain` as application data in records of `record_bytes`.
    pub fn client_data(&mut self, plain: &[u8], record_bytes: usize, out: &mut Vec<u8>) {
        let sealed = crate::records::seal_all(&mut self.client, plain, record_bytes, out);
        assert!(sealed.is_ok(), "{sealed:?}");
    }

    /// The client seals a record of any type and length (at most 65,000 bytes).
    pub fn client_typed(&mut self, content_type: u8, bytes: &[u8], out: &mut Vec<u8>) {
        let bytes = &bytes[..bytes.len().min(65_000)];
        let sealed = crate::records::seal_typed(&mut self.client, content_type, bytes, out);
        assert!(sealed.is_ok(), "{sealed:?}");
    }

    /// The client sends a KeyUpdate.
    pub fn client_key_update(&mut self, requested: bool, out: &mut Vec<u8>) {
        let sent = crate::records::send_key_update(&mut self.client, requested, out);
        assert!(sent.is_ok(), "{sent:?}");
    }

    /// The server opens the first record of `input`: the bytes taken and what it was;
    /// `Ok(None)` while incomplete; `Err` with the alert it would send.
    pub fn server_open(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<(usize, ServerOpened)>, Option<u8>> {
        use crate::records::Opened;
        match self.server.open(input, out) {
            Ok(None) => Ok(None),
            Ok(Some((n, opened))) => Ok(Some((
                n,
                match opened {
                    Opened::Data => ServerOpened::Data,
                    Opened::PeerClosed => ServerOpened::PeerClosed,
                    Opened::KeyUpdate => ServerOpened::KeyUpdate,
                },
            ))),
            Err(fatal) => Err(fatal.alert),
        }
    }

    /// The server seals `plain`; the client opens it all and must get `plain` back.
    pub fn server_reply_round_trips(&mut self, plain: &[u8]) {
        let mut wire = Vec::new();
        let sealed = crate::records::seal_all(&mut self.server, plain, 4096, &mut wire);
        assert!(sealed.is_ok(), "{sealed:?}");
        let mut got = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            match self.client.open(rest, &mut got) {
                Ok(Some((n, _))) => rest = &rest[n..],
                other => panic!("the client could not open the server's records: {other:?}"),
            }
        }
        assert_eq!(got, plain);
    }
}
