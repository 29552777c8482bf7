//! Enrollment: generate a key, send a CSR with the enrollment token to `POST /api/v1/enrollments`, and keep
//! what the server answers (certificate, CA, gateway port) in the state directory.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;
use crate::state::{Enrolled, Identity};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("the server refused the enrollment: {0}")]
    Refused(String),
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{0}")]
    Setup(String),
}

#[derive(Serialize)]
struct EnrollmentRequest<'a> {
    token: &'a str,
    csr_pem: &'a str,
    hostname: &'a str,
    agent_version: &'a str,
}

#[derive(Deserialize)]
struct EnrollmentResponse {
    system_id: String,
    system_name: String,
    certificate_pem: String,
    ca_certificate_pem: String,
    gateway_port: u16,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

/// How many times an unreachable server is retried before enrollment gives up.
const ENROLL_ATTEMPTS: u32 = 8;

/// Enrolls with the server at `server_url`. `ca_pem` is needed when the URL is HTTPS with Steward's own CA.
pub async fn enroll(
    server_url: &str,
    token: &str,
    hostname: &str,
    ca_pem: Option<&[u8]>,
) -> Result<Enrolled, EnrollError> {
    let url = url::parse(server_url).map_err(EnrollError::Setup)?;
    let key =
        rcgen::KeyPair::generate().map_err(|error| EnrollError::Setup(format!("cannot generate a key: {error}")))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, hostname);
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|error| EnrollError::Setup(format!("cannot build the certificate request: {error}")))?;

    let tls = match url.https {
        true => Some(tls_connector(ca_pem)?),
        false => None,
    };
    let body = serde_json::to_vec(&EnrollmentRequest {
        token,
        csr_pem: &csr,
        hostname,
        agent_version: env!("CARGO_PKG_VERSION"),
    })
    .map_err(|error| EnrollError::Setup(format!("cannot encode the request: {error}")))?;

    let mut backoff = Backoff::default();
    let mut attempt = 0;
    let (status, text) = loop {
        attempt += 1;
        match tokio::time::timeout(Duration::from_secs(30), post(&url, tls.as_ref(), &body)).await {
            Ok(Ok(answer)) => break answer,
            // Only a refused connection is retried: after a timeout the server may have enrolled us already,
            // and a second request would make a second system.
            Ok(Err(Failure::Connect(error))) if attempt < ENROLL_ATTEMPTS => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, ?delay, "server not reachable yet; retrying enrollment");
                tokio::time::sleep(delay).await;
            }
            Ok(Err(Failure::Connect(error))) => {
                return Err(EnrollError::Unreachable { url: server_url.to_string(), reason: error.to_string() });
            }
            Ok(Err(Failure::Certificate(reason))) => {
                return Err(EnrollError::Setup(format!(
                    "the server's certificate is not trusted ({reason}); pass --ca-file with the server's DATA/ca.pem"
                )));
            }
            Ok(Err(Failure::Exchange(reason))) => {
                return Err(EnrollError::Unreachable { url: server_url.to_string(), reason });
            }
            Err(_) => {
                return Err(EnrollError::Unreachable {
                    url: server_url.to_string(),
                    reason: "no answer within 30 seconds".into(),
                });
            }
        }
    };
    if !(200..300).contains(&status) {
        let message = serde_json::from_str::<ErrorResponse>(&text)
            .map(|body| body.error.message)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        return Err(EnrollError::Refused(message));
    }
    let answer: EnrollmentResponse = serde_json::from_str(&text)
        .map_err(|error| EnrollError::Setup(format!("the server's answer is not an enrollment: {error}")))?;
    Ok(Enrolled {
        identity: Identity {
            server_url: server_url.to_string(),
            gateway_host: url.host,
            gateway_port: answer.gateway_port,
            system_id: answer.system_id,
            system_name: answer.system_name,
        },
        key_pem: key.serialize_pem(),
        certificate_pem: answer.certificate_pem,
        ca_pem: answer.ca_certificate_pem,
    })
}

/// How one enrollment request failed.
enum Failure {
    /// No TCP connection (the server may not be up yet): worth retrying.
    Connect(std::io::Error),
    /// The TLS handshake refused the server's certificate.
    Certificate(String),
    /// The connection broke during the exchange.
    Exchange(String),
}

/// The largest answer the agent reads from the enrollment endpoint.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Posts the request over one HTTP/1.1 connection (TLS for https) and returns the status and body.
async fn post(url: &url::Url, tls: Option<&tokio_rustls::TlsConnector>, body: &[u8]) -> Result<(u16, String), Failure> {
    let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port)).await.map_err(Failure::Connect)?;
    let _ = tcp.set_nodelay(true);
    match tls {
        Some(connector) => {
            let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                .map_err(|error| Failure::Certificate(format!("{:?} is not a valid server name: {error}", url.host)))?;
            let stream = connector.connect(name, tcp).await.map_err(|error| {
                if error.kind() == std::io::ErrorKind::InvalidData {
                    Failure::Certificate(error.to_string())
                } else {
                    Failure::Exchange(error.to_string())
                }
            })?;
            exchange(stream, url, body).await
        }
        None => exchange(tcp, url, body).await,
    }
}

async fn exchange<S>(stream: S, url: &url::Url, body: &[u8]) -> Result<(u16, String), Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let broken = |error: &dyn std::fmt::Display| Failure::Exchange(error.to_string());
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| broken(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = hyper::Request::post(format!("{}/api/v1/enrollments", url.path_prefix))
        .header(hyper::header::HOST, url.authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, concat!("steward-agent/", env!("CARGO_PKG_VERSION")))
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(body)))
        .map_err(|e| broken(&e))?;
    let response = sender.send_request(request).await.map_err(|e| broken(&e))?;
    let status = response.status().as_u16();
    let collected =
        http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect().await.map_err(|e| broken(&e))?;
    let text = String::from_utf8(collected.to_bytes().to_vec()).map_err(|e| broken(&e))?;
    Ok((status, text))
}

/// Trusts the given CA, or else the system's certificate store.
fn tls_connector(ca_pem: Option<&[u8]>) -> Result<tokio_rustls::TlsConnector, EnrollError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for certificate in CertificateDer::pem_slice_iter(pem) {
                let certificate =
                    certificate.map_err(|error| EnrollError::Setup(format!("cannot read the CA file: {error}")))?;
                roots
                    .add(certificate)
                    .map_err(|error| EnrollError::Setup(format!("cannot use the CA file: {error}")))?;
            }
        }
        None => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(certificate);
            }
        }
    }
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)))
}

/// The little URL parsing the agent needs, without a URL crate.
mod url {
    pub struct Url {
        pub https: bool,
        /// Host name or IP address, without brackets.
        pub host: String,
        pub port: u16,
        /// `host:port` as written, for the `Host` header.
        pub authority: String,
        /// Any path before `/api/v1`, without a trailing slash.
        pub path_prefix: String,
    }

    /// Accepts `http://host[:port][/path]` and `https://...`; IPv6 hosts in brackets.
    pub fn parse(text: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("--server {text:?} must start with http:// or https://"));
        };
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(authority, path)| (authority, path));
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| format!("--server {text:?}: unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("--server {text:?} names no host"));
        }
        let port = match port {
            Some(port) => port.parse().map_err(|_| format!("--server {text:?}: {port:?} is not a port"))?,
            None if https => 443,
            None => 80,
        };
        let path = path.trim_end_matches('/');
        Ok(Url {
            https,
            host: host.to_string(),
            port,
            authority: authority.to_string(),
            path_prefix: if path.is_empty() { String::new() } else { format!("/{path}") },
        })
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn hosts() {
            let url = super::parse("http://127.0.0.1:8440").expect("valid");
            assert_eq!(
                (url.https, url.host.as_str(), url.port, url.path_prefix.as_str()),
                (false, "127.0.0.1", 8440, "")
            );
            let url = super::parse("https://steward.example/").expect("valid");
            assert_eq!((url.https, url.host.as_str(), url.port), (true, "steward.example", 443));
            let url = super::parse("https://[::1]:8440/steward/").expect("valid");
            assert_eq!((url.host.as_str(), url.port, url.path_prefix.as_str()), ("::1", 8440, "/steward"));
            assert_eq!(url.authority, "[::1]:8440");
            assert!(super::parse("ftp://x").is_err());
            assert!(super::parse("http://").is_err());
            assert!(super::parse("http://host:port").is_err());
        }
    }
}
