//! Certificates fakewa mints for itself: the TLS CA and leaf (for `wss://`), and the Noise
//! certificate chain whose leaf key is the server's static key.

use std::sync::Arc;

use anyhow::Context as _;
use buffa::Message as _;
use futures_rustls::rustls;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use waproto::whatsapp::{self as wa, cert_chain::noise_certificate};

/// The TLS material: the CA (written to `DIR/ca.pem`) and a server config for the leaf.
pub struct Tls {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

/// Mints a CA and a leaf for `localhost`, 127.0.0.1 and ::1, signed by that CA.
pub fn mint_tls() -> anyhow::Result<Tls> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fakewa test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_string()])?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "fakewa");
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse()?));
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress("::1".parse()?));
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;

    let chain = vec![
        CertificateDer::from(leaf_cert.der().to_vec()),
        CertificateDer::from(ca_cert.der().to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("TLS server certificate")?;
    Ok(Tls {
        ca_pem: ca_cert.pem(),
        server_config: Arc::new(server_config),
    })
}

/// A Noise `CertChain` for `server_static_pub`: intermediate `issuer_serial` 0, leaf
/// `issuer_serial` = the intermediate's serial, zero signatures (clients built with
/// `danger-skip-cert-chain-verify` skip only the signature checks) and a `not_after`
/// already in the past, so a client never caches it for Noise IK and uses XX every time.
pub fn noise_cert_chain(server_static_pub: &[u8; 32]) -> Vec<u8> {
    let intermediate = noise_certificate::Details {
        serial: Some(7),
        issuer_serial: Some(0),
        key: Some(vec![0x5a; 32]),
        not_before: Some(1_500_000_000),
        not_after: Some(1_600_000_000),
    };
    let leaf = noise_certificate::Details {
        serial: Some(8),
        issuer_serial: Some(7),
        key: Some(server_static_pub.to_vec()),
        not_before: Some(1_500_000_000),
        not_after: Some(1_600_000_000),
    };
    wa::CertChain {
        leaf: buffa::MessageField::some(wa::cert_chain::NoiseCertificate {
            details: Some(leaf.encode_to_vec()),
            signature: Some(vec![0u8; 64]),
        }),
        intermediate: buffa::MessageField::some(wa::cert_chain::NoiseCertificate {
            details: Some(intermediate.encode_to_vec()),
            signature: Some(vec![0u8; 64]),
        }),
    }
    .encode_to_vec()
}
