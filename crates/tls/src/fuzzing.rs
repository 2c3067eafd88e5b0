//! For fuzz targets only (feature `fuzzing`): a holder on a throwaway certificate.

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
