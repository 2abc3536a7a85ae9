//! Test certificate factory: a fresh rcgen CA per [`TestCa::new`], leaf certificates for localhost, `127.0.0.1`
//! and `::1` in every private-key encoding pushbridge accepts, and rustls client configs trusting only that CA.
//!
//! rcgen with ring cannot generate RSA keys, so RSA leaves use the committed key `tests/fixtures/rsa2048.*.key`
//! (PKCS#1 and PKCS#8 encodings of one key); their certificates are still signed by the fresh CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ED25519, PKCS_RSA_SHA256, PublicKeyData, SerialNumber,
};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};

const RSA_PKCS1: &str = include_str!("../fixtures/rsa2048.pkcs1.key");
const RSA_PKCS8: &str = include_str!("../fixtures/rsa2048.pkcs8.key");

/// The names every leaf is valid for.
pub const LEAF_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Key type and PEM encoding of a leaf's private key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA P-256, PKCS#8 (`BEGIN PRIVATE KEY`).
    EcdsaP256,
    /// ECDSA P-256, SEC1 with the curve named (`BEGIN EC PRIVATE KEY`, as openssl and Go write it).
    EcdsaP256Sec1,
    /// Ed25519, PKCS#8.
    Ed25519,
    /// RSA 2048 (fixture key), PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    Rsa,
    /// RSA 2048 (fixture key), PKCS#8.
    RsaPkcs8,
}

impl KeyKind {
    pub const ALL: [KeyKind; 5] = [
        KeyKind::EcdsaP256,
        KeyKind::EcdsaP256Sec1,
        KeyKind::Ed25519,
        KeyKind::Rsa,
        KeyKind::RsaPkcs8,
    ];
}

/// A throw-away certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let serial = fresh_serial();
        // A unique name, so another TestCa's certificates are "unknown issuer", not "bad signature".
        let name = format!("pushbridge test CA {serial}");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(serial);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    /// A fresh leaf for [`LEAF_NAMES`] written to `dir/tls.crt` and `dir/tls.key` (the Kubernetes secret names),
    /// replacing what is there: call again on the same `dir` to rotate. Returns (cert_path, key_path).
    pub fn leaf_files(&self, dir: &Path, key_kind: KeyKind) -> (PathBuf, PathBuf) {
        let (cert_pem, key_pem) = self.leaf_pem(key_kind);
        let cert_path = dir.join("tls.crt");
        let key_path = dir.join("tls.key");
        std::fs::write(&cert_path, cert_pem).unwrap();
        std::fs::write(&key_path, key_pem).unwrap();
        (cert_path, key_path)
    }

    /// A fresh leaf for [`LEAF_NAMES`] as (cert_pem, key_pem); every call has a new serial (and a new key, except
    /// for the RSA fixture).
    pub fn leaf_pem(&self, key_kind: KeyKind) -> (String, String) {
        let (key, key_pem) = match key_kind {
            KeyKind::EcdsaP256 => {
                let key = KeyPair::generate().unwrap();
                let pem = key.serialize_pem();
                (key, pem)
            }
            KeyKind::EcdsaP256Sec1 => {
                let key = KeyPair::generate().unwrap();
                let pem = pem_encode("EC PRIVATE KEY", &pkcs8_p256_to_sec1(key.serialized_der()));
                (key, pem)
            }
            KeyKind::Ed25519 => {
                let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
                let pem = key.serialize_pem();
                (key, pem)
            }
            KeyKind::Rsa | KeyKind::RsaPkcs8 => {
                let key =
                    KeyPair::from_pkcs8_pem_and_sign_algo(RSA_PKCS8, &PKCS_RSA_SHA256).unwrap();
                let pem = if key_kind == KeyKind::Rsa {
                    RSA_PKCS1
                } else {
                    RSA_PKCS8
                };
                (key, pem.to_owned())
            }
        };
        (self.sign_leaf(&key), key_pem)
    }

    /// A leaf certificate (PEM) for `public_key`, e.g. to pair a certificate with the wrong key.
    pub fn sign_leaf(&self, public_key: &impl PublicKeyData) -> String {
        let mut params = CertificateParams::new(LEAF_NAMES.map(String::from).to_vec()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.serial_number = Some(fresh_serial());
        params.signed_by(public_key, &self.issuer).unwrap().pem()
    }

    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A client trusting only this CA, TLS 1.2 and 1.3, offering `alpn` (e.g. `[b"h2"]`; empty offers none).
    pub fn client_config(&self, alpn: &[&[u8]]) -> ClientConfig {
        self.client_config_versions(alpn, &[&rustls::version::TLS13, &rustls::version::TLS12])
    }

    /// As [`TestCa::client_config`], limited to `versions`.
    pub fn client_config_versions(
        &self,
        alpn: &[&[u8]],
        versions: &[&'static SupportedProtocolVersion],
    ) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der()).unwrap();
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

/// The first certificate of a PEM file, to compare with what a server presents.
pub fn first_cert_der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

fn fresh_serial() -> SerialNumber {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut bytes = vec![0x01];
    bytes.extend_from_slice(&nanos.to_be_bytes());
    bytes.extend_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    SerialNumber::from(bytes)
}

/// The SEC1 `ECPrivateKey` inside ring's P-256 PKCS#8, with the curve OID added as `[0] parameters` (RFC 5915).
fn pkcs8_p256_to_sec1(pkcs8: &[u8]) -> Vec<u8> {
    const P256_PARAMS: [u8; 12] = [
        0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let (_, info, _) = der_tlv(pkcs8); // PrivateKeyInfo SEQUENCE
    let (_, _, rest) = der_tlv(info); // version
    let (_, _, rest) = der_tlv(rest); // AlgorithmIdentifier
    let (tag, ec_key, _) = der_tlv(rest); // privateKey OCTET STRING
    assert_eq!(tag, 0x04);
    let (_, fields, _) = der_tlv(ec_key); // ECPrivateKey SEQUENCE
    let (_, _, after_version) = der_tlv(fields);
    let (_, _, after_private) = der_tlv(after_version);
    let head = &fields[..fields.len() - after_private.len()];
    let mut body = head.to_vec();
    body.extend_from_slice(&P256_PARAMS);
    body.extend_from_slice(after_private); // [1] publicKey
    let mut out = vec![0x30];
    push_der_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// (tag, contents, rest) of the DER element at the start of `input`.
fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let (len, header) = match input[1] {
        n if n < 0x80 => (n as usize, 2),
        0x81 => (input[2] as usize, 3),
        0x82 => (((input[2] as usize) << 8) | input[3] as usize, 4),
        other => panic!("unexpected DER length byte {other:#x}"),
    };
    (tag, &input[header..header + len], &input[header + len..])
}

fn push_der_len(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=0x7f => out.push(len as u8),
        0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
        _ => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// A config `listen` entry on 127.0.0.1:0 serving TLS with these files.
pub fn tls_listener(cert: &Path, key: &Path) -> String {
    format!(
        "  - address: \"127.0.0.1:0\"\n    tls: {{ cert: \"{}\", key: \"{}\" }}\n",
        cert.display(),
        key.display()
    )
}
