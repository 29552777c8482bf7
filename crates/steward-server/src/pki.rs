//! The server's own certificate authority: created on first start in the data directory, it signs agent
//! certificates at enrollment, the agent gateway's certificate, and the HTTPS certificate when the operator
//! gives none.
//!
//! Files in the data directory: `ca.pem` (the CA certificate, given to agents and to CLI users), `ca.key`
//! (mode 0600). The gateway and HTTPS certificates are issued afresh at every start and never written out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read or write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate operation failed: {what}")]
    Certificate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("the certificate signing request is not acceptable: {0}")]
    BadRequest(String),
    #[error("TLS configuration failed")]
    Tls(#[from] rustls::Error),
}

fn certificate_error(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Certificate { what, source }
}

/// A certificate and its key, ready for rustls.
pub struct IssuedIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// An agent certificate signed at enrollment.
pub struct AgentCertificate {
    pub pem: String,
    /// Serial number in lower-case hex, as the gateway reads it back from the presented certificate.
    pub serial_hex: String,
}

pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
}

impl CertificateAuthority {
    /// Loads the CA from `data_dir`, or creates it there on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, PkiError> {
        let cert_path = data_dir.join("ca.pem");
        let key_path = data_dir.join("ca.key");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| PkiError::Io { path, source }
        };
        if !cert_path.exists() {
            let key = KeyPair::generate().map_err(certificate_error("generate the CA key"))?;
            let mut params = CertificateParams::default();
            let mut name = DistinguishedName::new();
            name.push(DnType::OrganizationName, "Steward");
            name.push(DnType::CommonName, format!("Steward CA {}", short_random_id()));
            params.distinguished_name = name;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages =
                vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
            params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
            params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365 * 20);
            let certificate = params.self_signed(&key).map_err(certificate_error("sign the CA certificate"))?;
            write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
            // The certificate is written last: its presence means the CA is complete.
            std::fs::write(&cert_path, certificate.pem()).map_err(io(&cert_path))?;
        }
        let ca_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(certificate_error("read the CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, key).map_err(certificate_error("read the CA certificate"))?;
        let ca_der = pem_to_der(&ca_pem).ok_or_else(|| PkiError::BadRequest("ca.pem holds no certificate".into()))?;
        Ok(Self { issuer, ca_pem, ca_der })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca_der.clone()
    }

    /// Signs an agent's CSR. Whatever the CSR asks for, the certificate names the system ID as its common name,
    /// is good for client authentication only, and lasts ten years (revocation is by serial, in the store).
    pub fn sign_agent(&self, csr_pem: &str, system_id: &str) -> Result<AgentCertificate, PkiError> {
        if csr_pem.len() > 16 * 1024 {
            return Err(PkiError::BadRequest("the CSR is larger than 16 KiB".into()));
        }
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|error| PkiError::BadRequest(format!("cannot parse the CSR: {error}")))?;
        let serial: [u8; 16] = rand::random();
        let mut serial = serial.to_vec();
        serial[0] &= 0x7f; // positive
        serial[0] |= 0x40; // no leading zero byte, so the hex form is stable
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, system_id);
        params.distinguished_name = name;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
        csr.params = params;
        let certificate = csr.signed_by(&self.issuer).map_err(certificate_error("sign the agent certificate"))?;
        Ok(AgentCertificate { pem: certificate.pem(), serial_hex: hex(&serial) })
    }

    /// Issues a server certificate for the given DNS names and IP addresses with a fresh key.
    pub fn issue_server(&self, names: &[String]) -> Result<IssuedIdentity, PkiError> {
        let key = KeyPair::generate().map_err(certificate_error("generate a server key"))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, names.first().cloned().unwrap_or_else(|| "steward".into()));
        params.distinguished_name = name;
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => name.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()
            .map_err(certificate_error("name the server certificate"))?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(825);
        let certificate =
            params.signed_by(&key, &self.issuer).map_err(certificate_error("sign a server certificate"))?;
        Ok(IssuedIdentity {
            chain: vec![certificate.der().clone(), self.ca_der.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    /// TLS configuration of the agent gateway: our gateway certificate, and a client certificate signed by
    /// this CA required from every agent.
    pub fn gateway_tls_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let identity = self.issue_server(&[steward_protocol::GATEWAY_TLS_NAME.to_string()])?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|error| PkiError::BadRequest(format!("client verifier: {error}")))?;
        let config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(identity.chain, identity.key)?;
        Ok(Arc::new(config))
    }
}

/// TLS configuration for HTTPS from an identity.
pub fn https_tls_config(identity: IssuedIdentity) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let mut config =
        rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(identity.chain, identity.key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reads an operator-given certificate chain and key (PEM files) for HTTPS.
pub fn load_identity(cert_path: &Path, key_path: &Path) -> Result<IssuedIdentity, PkiError> {
    use rustls::pki_types::pem::PemObject;
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| PkiError::BadRequest(format!("{}: {error}", cert_path.display())))?;
    if chain.is_empty() {
        return Err(PkiError::BadRequest(format!("{} holds no certificate", cert_path.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|error| PkiError::BadRequest(format!("{}: {error}", key_path.display())))?;
    Ok(IssuedIdentity { chain, key })
}

/// The serial number of a DER certificate in lower-case hex, and its subject common name.
pub fn certificate_serial_and_name(der: &[u8]) -> Option<(String, String)> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let serial = hex(certificate.raw_serial());
    let name = certificate.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some((serial, name))
}

fn pem_to_der(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn short_random_id() -> String {
    let bytes: [u8; 4] = rand::random();
    hex(&bytes)
}

/// Writes a file readable by its owner only, creating it with that mode so it is never briefly world-readable.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // An existing file keeps its mode on open: set it, so a secret never lands in a readable file.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(contents)?;
    file.sync_all()
}
