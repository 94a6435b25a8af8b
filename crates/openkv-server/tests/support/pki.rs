//! A throwaway certificate authority for the TLS tests: a CA and server certificates for
//! `localhost` and `127.0.0.1`, made fresh in each test run (nothing to expire in the repo).
//! Shared by the server's and the CLI's tests (the CLI includes this file by path).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A CA that clients trust and the server certificates it signed.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "openkv test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    /// The CA certificate, PEM: what a client adds to its trusted roots.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `localhost` and `127.0.0.1` with the public key of `key`
    /// (PEM), signed by this CA.
    pub fn server_cert_pem(&self, key: &KeyPair) -> String {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "openkv test server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.signed_by(key, &self.cert, &self.key).unwrap().pem()
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` (a fresh P-256 key, PKCS#8) into `dir`.
    pub fn write_server_files(&self, dir: &Path) -> ServerFiles {
        let key = KeyPair::generate().unwrap();
        let files = ServerFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.ca, self.cert_pem()).unwrap();
        std::fs::write(&files.cert, self.server_cert_pem(&key)).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}

/// Where [`TestCa::write_server_files`] put its PEM files.
pub struct ServerFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}
