//! The per-test PKI: a CA, two server certificates (SAN 127.0.0.1 and localhost, different
//! serials and keys), a client certificate with a CN, a key that matches nothing and a broken
//! chain file, generated into a [`TempDir`] that is removed on drop. Private keys never leave
//! that directory and are never committed.
//!
//! The server is pointed at `live.crt` / `live.key` (copies of the first server certificate),
//! so that `refresh_certs` tests can replace those files in place with [`Pki::install`].
//! As root the servers run as `nobody`: the directory (mode 0777 as root) and its files
//! (0644) stay readable for them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};

use crate::tempdir::TempDir;
use crate::tls::client::ClientConfig;

/// Serial number of the certificate a server starts with.
pub const SERVER_SERIAL: u32 = 100;
/// Serial number of the certificate a rotation installs (same names, another key).
pub const SERVER2_SERIAL: u32 = 200;
/// Serial number of the client certificate.
pub const CLIENT_SERIAL: u32 = 300;
/// Common name of the client certificate.
pub const CLIENT_CN: &str = "rampart-test-client";
/// Subject alternative names of the client certificate.
pub const CLIENT_SANS: [&str; 2] = ["client.example", "10.0.0.1"];
/// How long a certificate is valid; tests last seconds.
const VALIDITY_DAYS: u32 = 2;

/// A key and certificate written to `<name>.key` / `<name>.crt`.
#[derive(Debug)]
pub struct Issued {
    pub cert: X509,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// The files of one test's PKI, in a directory removed on drop.
#[derive(Debug)]
pub struct Pki {
    pub ca: Issued,
    /// SAN 127.0.0.1 and localhost, serial [`SERVER_SERIAL`].
    pub server: Issued,
    /// Same names as `server`, another key, serial [`SERVER2_SERIAL`].
    pub server2: Issued,
    /// CN [`CLIENT_CN`], SANs [`CLIENT_SANS`], serial [`CLIENT_SERIAL`], signed by the same CA.
    pub client: Issued,
    /// A private key that matches no certificate.
    pub mismatched_key: PathBuf,
    /// A PEM file whose certificate block is not a certificate.
    pub broken_chain: PathBuf,
    /// The chain the server is started with; starts as a copy of `server`.
    pub live_cert: PathBuf,
    /// The key the server is started with; starts as a copy of `server`'s.
    pub live_key: PathBuf,
    /// The client CA file the server is given with [`Pki::ca_opts`]; a copy of `ca`.
    pub live_ca: PathBuf,
    ca_key: PKey<Private>,
    dir: TempDir,
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A certificate for `cn` signed by `ca` (self-signed CA when `None`), with `sans`.
fn issue(
    dir: &Path,
    cn: &str,
    file: &str,
    serial: u32,
    sans: &[&str],
    ca: Option<(&X509, &PKey<Private>)>,
) -> (Issued, PKey<Private>) {
    let key = new_key();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = Asn1Integer::from_bn(&BigNum::from_u32(serial).unwrap()).unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(ca.map_or(&*name, |(c, _)| c.subject_name()))
        .unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(VALIDITY_DAYS).unwrap())
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
            if let Some(uri) = s.strip_prefix("uri:") {
                san.uri(uri);
            } else if let Some(email) = s.strip_prefix("email:") {
                san.email(email);
            } else if s.parse::<std::net::IpAddr>().is_ok() {
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
    let cert_path = dir.join(format!("{file}.crt"));
    let key_path = dir.join(format!("{file}.key"));
    write_readable(&cert_path, &cert.to_pem().unwrap());
    write_readable(&key_path, &key.private_key_to_pem_pkcs8().unwrap());
    (
        Issued {
            cert,
            cert_path,
            key_path,
        },
        key,
    )
}

/// Writes `contents` with mode 0644, whatever the umask: the server may run as `nobody`.
fn write_readable(path: &Path, contents: &[u8]) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

fn copy_readable(from: &Path, to: &Path) {
    let bytes = fs::read(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
    write_readable(to, &bytes);
}

impl Pki {
    pub fn new() -> Pki {
        let dir = TempDir::new().unwrap();
        let d = dir.path();
        let (ca, ca_key) = issue(d, "rampart-test-ca", "ca", 1, &[], None);
        let issuer = Some((&ca.cert, &ca_key));
        let sans = ["127.0.0.1", "localhost"];
        let (server, _) = issue(d, "localhost", "server", SERVER_SERIAL, &sans, issuer);
        let (server2, _) = issue(d, "localhost", "server2", SERVER2_SERIAL, &sans, issuer);
        let (client, _) = issue(d, CLIENT_CN, "client", CLIENT_SERIAL, &CLIENT_SANS, issuer);
        let mismatched_key = d.join("mismatched.key");
        write_readable(
            &mismatched_key,
            &new_key().private_key_to_pem_pkcs8().unwrap(),
        );
        let broken_chain = d.join("broken-chain.crt");
        write_readable(
            &broken_chain,
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        );
        let live_cert = d.join("live.crt");
        let live_key = d.join("live.key");
        let live_ca = d.join("live-ca.crt");
        copy_readable(&server.cert_path, &live_cert);
        copy_readable(&server.key_path, &live_key);
        copy_readable(&ca.cert_path, &live_ca);
        Pki {
            ca,
            server,
            server2,
            client,
            mismatched_key,
            broken_chain,
            live_cert,
            live_key,
            live_ca,
            ca_key,
            dir,
        }
    }

    /// Another client certificate signed by the CA, with subject CN `cn` and no SANs, written
    /// to `<file>.crt` / `<file>.key`.
    pub fn issue_client(&self, cn: &str, file: &str, serial: u32) -> Issued {
        issue(
            self.dir.path(),
            cn,
            file,
            serial,
            &[],
            Some((&self.ca.cert, &self.ca_key)),
        )
        .0
    }

    /// [`Pki::issue_client`] with subject alternative names: `uri:<uri>`, `email:<address>`,
    /// an IP address, else a DNS name.
    pub fn issue_client_with_sans(
        &self,
        cn: &str,
        file: &str,
        serial: u32,
        sans: &[&str],
    ) -> Issued {
        issue(
            self.dir.path(),
            cn,
            file,
            serial,
            sans,
            Some((&self.ca.cert, &self.ca_key)),
        )
        .0
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Copies `issued`'s certificate and key over the live files.
    pub fn install(&self, issued: &Issued) {
        self.install_files(&issued.cert_path, &issued.key_path);
    }

    /// Copies `cert` and `key` over the live files.
    pub fn install_files(&self, cert: &Path, key: &Path) {
        copy_readable(cert, &self.live_cert);
        copy_readable(key, &self.live_key);
    }

    /// Makes the live CA file unreadable to the server (mode 0; the server is `nobody` as
    /// root, and the file's owner otherwise).
    pub fn make_live_ca_unreadable(&self) {
        fs::set_permissions(&self.live_ca, fs::Permissions::from_mode(0o000)).unwrap();
    }

    /// Undoes [`Pki::make_live_ca_unreadable`].
    pub fn make_live_ca_readable(&self) {
        fs::set_permissions(&self.live_ca, fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// `-o` value naming the live chain and key.
    pub fn cert_opts(&self) -> String {
        format!(
            "ssl_chain_cert={},ssl_key={}",
            self.live_cert.display(),
            self.live_key.display()
        )
    }

    /// `-o` value naming the live client CA file.
    pub fn ca_opts(&self) -> String {
        format!("ssl_ca_cert={}", self.live_ca.display())
    }

    /// A client that trusts this CA and verifies the server's name (127.0.0.1).
    pub fn client(&self) -> ClientConfig<'_> {
        ClientConfig::new(self)
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}
