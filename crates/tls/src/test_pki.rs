//! A throwaway PKI for tests, generated per run into a temporary directory (never committed).

// Tests and fuzz setup: a failed unwrap is a failed run.
#![allow(clippy::unwrap_used)]
// The fuzz targets (feature `fuzzing`) use only part of it.
#![cfg_attr(not(test), allow(dead_code))]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};

pub struct Issued {
    pub cert: X509,
    pub key: PKey<Private>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

pub struct Pki {
    pub dir: PathBuf,
    pub ca: Issued,
    pub server: Issued,
    /// Same names as `server`, another key and serial: what a certificate rotation installs.
    pub server2: Issued,
    pub client: Issued,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn issue(
    dir: &std::path::Path,
    name: &str,
    serial: u32,
    sans: &[&str],
    ca: Option<(&X509, &PKey<Private>)>,
) -> Issued {
    let key = key();
    let mut subject = X509NameBuilder::new().unwrap();
    subject.append_entry_by_text("CN", name).unwrap();
    let subject = subject.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = Asn1Integer::from_bn(&BigNum::from_u32(serial).unwrap()).unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&subject).unwrap();
    b.set_issuer_name(ca.map_or(&*subject, |(c, _)| c.subject_name()))
        .unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    if ca.is_none() {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(KeyUsage::new().key_cert_sign().crl_sign().build().unwrap())
            .unwrap();
    }
    if !sans.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for s in sans {
            if s.parse::<std::net::IpAddr>().is_ok() {
                san.ip(s);
            } else {
                san.dns(s);
            }
        }
        let ext = san
            .build(&b.x509v3_context(ca.map(|(c, _)| &**c), None))
            .unwrap();
        b.append_extension(ext).unwrap();
    }
    b.sign(ca.map_or(&key, |(_, k)| k), MessageDigest::sha256())
        .unwrap();
    let cert = b.build();
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.to_pem().unwrap()).unwrap();
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    Issued {
        cert,
        key,
        cert_path,
        key_path,
    }
}

impl Pki {
    pub fn new() -> Pki {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rampart-tls-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = issue(&dir, "ca", 1, &[], None);
        let issuer = Some((&ca.cert, &ca.key));
        let server = issue(&dir, "server", 100, &["127.0.0.1", "localhost"], issuer);
        let server2 = issue(&dir, "server2", 200, &["127.0.0.1", "localhost"], issuer);
        let client = issue(&dir, "client", 300, &["client.example", "10.0.0.1"], issuer);
        Pki {
            dir,
            ca,
            server,
            server2,
            client,
        }
    }

    /// A file in the test directory with the given contents.
    pub fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}
