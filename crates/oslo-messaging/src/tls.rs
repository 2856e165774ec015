//! TLS to the broker as oslo.messaging's rabbit driver sets it up (its
//! `_fetch_ssl_params`, through kombu and py-amqp): the broker's certificate
//! chain is always verified — against `ssl_ca_file` alone when it is set,
//! else against the system's roots — and its name is checked against the
//! host of the transport URL only when `ssl_ca_file` is set and
//! `ssl_enforce_hostname_verification` is true (oslo's default). The client
//! certificate is `ssl_cert_file` + `ssl_key_file`.
//!
//! Must not know: AMQP or how the socket is opened.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::Error;
use crate::options::RabbitOptions;

/// Whether the broker's name is checked, by oslo's rule: only with a CA file
/// and `ssl_enforce_hostname_verification`.
pub(crate) fn verifies_hostname(o: &RabbitOptions) -> bool {
    !o.ssl_ca_file.is_empty() && o.ssl_enforce_hostname_verification
}

/// The rustls client configuration for the `ssl_*` options. Every file is
/// read here, so a wrong path is an error before any connection.
pub(crate) fn client_config(o: &RabbitOptions) -> Result<ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(trust_roots(o)?);
    let chain = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
        .build()
        .map_err(|e| Error::Tls { what: "certificate verifier".into(), source: Box::new(e) })?;
    let verifier: Arc<dyn ServerCertVerifier> = if verifies_hostname(o) { chain } else { Arc::new(ChainOnly(chain)) };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls { what: "protocol versions".into(), source: Box::new(e) })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match client_identity(o)? {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| Error::Tls { what: format!("client certificate {}", o.ssl_cert_file), source: Box::new(e) }),
        None => Ok(builder.with_no_client_auth()),
    }
}

fn read(option: &'static str, path: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::TlsFile { option, path: path.to_owned(), source })
}

fn pem_error(what: String) -> impl FnOnce(rustls::pki_types::pem::Error) -> Error {
    move |e| Error::Tls { what, source: Box::new(e) }
}

/// `ssl_ca_file` alone when set (py-amqp loads the default roots only
/// without one), else the system's roots.
fn trust_roots(o: &RabbitOptions) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    if o.ssl_ca_file.is_empty() {
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
        return Ok(roots);
    }
    let pem = read("ssl_ca_file", &o.ssl_ca_file)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(format!("ssl_ca_file {}", o.ssl_ca_file)))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(Error::Config(format!("ssl_ca_file {}: no PEM certificate in it", o.ssl_ca_file)));
    }
    Ok(roots)
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn client_identity(o: &RabbitOptions) -> Result<Option<Identity>, Error> {
    match (o.ssl_cert_file.is_empty(), o.ssl_key_file.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => {
            let pem = read("ssl_cert_file", &o.ssl_cert_file)?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(pem_error(format!("ssl_cert_file {}", o.ssl_cert_file)))?;
            let key = PrivateKeyDer::from_pem_slice(&read("ssl_key_file", &o.ssl_key_file)?)
                .map_err(pem_error(format!("ssl_key_file {}", o.ssl_key_file)))?;
            Ok(Some((certs, key)))
        }
        _ => Err(Error::Config("ssl_cert_file and ssl_key_file must be set together".into())),
    }
}

/// Verifies the chain (issuer, validity, usage) with webpki and accepts a
/// certificate that is valid for another name: what `ssl=true` without
/// hostname verification does in oslo (webpki checks the name only after
/// the chain, so every other failure is still reported).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A CA (PEM file in `dir`) and a server certificate for `localhost` only.
    fn pki(
        dir: &std::path::Path,
        ca_name: &str,
    ) -> (String, Vec<CertificateDer<'static>>, PrivatePkcs8KeyDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, ca_name);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
        let ca_file = dir.join(format!("{ca_name}.pem"));
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        (ca_file.display().to_string(), vec![leaf.der().clone()], PrivatePkcs8KeyDer::from(key.serialize_der()))
    }

    /// A TLS server on 127.0.0.1 presenting `chain`; answers each handshake with one byte.
    async fn server(chain: Vec<CertificateDer<'static>>, key: PrivatePkcs8KeyDer<'static>) -> u16 {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, PrivateKeyDer::Pkcs8(key))
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"!").await;
                    let _ = tls.shutdown().await;
                }
            }
        });
        port
    }

    /// Connects to 127.0.0.1:`port` as `host` with the options' configuration.
    async fn handshake(o: &RabbitOptions, port: u16, host: &str) -> Result<(), String> {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(o).unwrap()));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let name = ServerName::try_from(host.to_owned()).unwrap();
        let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        Ok(())
    }

    fn options(ca_file: &str, enforce: bool) -> RabbitOptions {
        RabbitOptions {
            ssl: true,
            ssl_ca_file: ca_file.to_owned(),
            ssl_enforce_hostname_verification: enforce,
            ..RabbitOptions::default()
        }
    }

    #[tokio::test]
    async fn hostname_is_checked_only_when_enforced_with_a_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let (ca_file, chain, key) = pki(dir.path(), "stack-ca");
        let port = server(chain, key).await;

        let enforced = options(&ca_file, true);
        assert!(verifies_hostname(&enforced));
        handshake(&enforced, port, "localhost").await.expect("the certificate names localhost");
        let err = handshake(&enforced, port, "127.0.0.1").await.expect_err("127.0.0.1 is not in the certificate");
        assert!(err.contains("not valid for name"), "{err}");

        let relaxed = options(&ca_file, false);
        assert!(!verifies_hostname(&relaxed));
        handshake(&relaxed, port, "127.0.0.1").await.expect("name not checked, chain trusted");
    }

    #[tokio::test]
    async fn the_chain_is_verified_even_without_hostname_verification() {
        let dir = tempfile::tempdir().unwrap();
        let (_, chain, key) = pki(dir.path(), "broker-ca");
        let (other_ca, _, _) = pki(dir.path(), "other-ca");
        let port = server(chain, key).await;

        let err = handshake(&options(&other_ca, false), port, "localhost").await.expect_err("unknown CA");
        assert!(err.contains("UnknownIssuer"), "{err}");
        // No ssl_ca_file: the system roots, which do not know the test CA; the name is never checked.
        let system = RabbitOptions { ssl: true, ..RabbitOptions::default() };
        assert!(!verifies_hostname(&system));
        let err = handshake(&system, port, "127.0.0.1").await.expect_err("unknown CA for the system roots");
        assert!(err.contains("UnknownIssuer"), "{err}");
    }

    #[test]
    fn file_problems_name_the_option() {
        let o = RabbitOptions { ssl_ca_file: "/nonexistent/ca.pem".into(), ..RabbitOptions::default() };
        assert!(matches!(client_config(&o), Err(Error::TlsFile { option: "ssl_ca_file", .. })));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let o = RabbitOptions { ssl_ca_file: empty.display().to_string(), ..RabbitOptions::default() };
        assert!(matches!(client_config(&o), Err(Error::Config(m)) if m.contains("no PEM certificate")));
        let o = RabbitOptions { ssl_cert_file: "/c.pem".into(), ..RabbitOptions::default() };
        assert!(matches!(client_config(&o), Err(Error::Config(m)) if m.contains("set together")));
    }
}
