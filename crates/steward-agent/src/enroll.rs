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
    #[error("cannot reach the server at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
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

    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if let Some(pem) = ca_pem {
        let certificate = reqwest::Certificate::from_pem(pem)
            .map_err(|error| EnrollError::Setup(format!("cannot read the CA file: {error}")))?;
        builder = builder.tls_certs_only([certificate]);
    }
    let client = builder.build().map_err(|error| EnrollError::Setup(format!("cannot set up HTTPS: {error}")))?;
    let body = EnrollmentRequest { token, csr_pem: &csr, hostname, agent_version: env!("CARGO_PKG_VERSION") };
    let endpoint = format!("{}/api/v1/enrollments", server_url.trim_end_matches('/'));

    let mut backoff = Backoff::default();
    let mut attempt = 0;
    let response = loop {
        attempt += 1;
        match client.post(&endpoint).json(&body).send().await {
            Ok(response) => break response,
            // Only a refused connection is retried: after a timeout the server may have enrolled us already,
            // and a second request would make a second system.
            Err(source) if attempt >= ENROLL_ATTEMPTS || !source.is_connect() || is_certificate_error(&source) => {
                if is_certificate_error(&source) {
                    return Err(EnrollError::Setup(format!(
                        "the server's certificate is not trusted ({}); pass --ca-file with the server's DATA/ca.pem",
                        error_chain(&source)
                    )));
                }
                return Err(EnrollError::Unreachable { url: server_url.to_string(), source });
            }
            Err(error) => {
                let delay = backoff.next_delay();
                let error = error_chain(&error);
                tracing::warn!(%error, ?delay, "server not reachable yet; retrying enrollment");
                tokio::time::sleep(delay).await;
            }
        }
    };
    let status = response.status();
    let text =
        response.text().await.map_err(|source| EnrollError::Unreachable { url: server_url.to_string(), source })?;
    if !status.is_success() {
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

/// Whether a request failed on the server's certificate rather than on the network.
fn is_certificate_error(error: &reqwest::Error) -> bool {
    let chain = error_chain(error);
    chain.contains("certificate") || chain.contains("UnknownIssuer") || chain.contains("NotValidForName")
}

/// An error with all its causes, `outer: cause: root cause`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The little URL parsing the agent needs, without a URL crate.
mod url {
    pub struct Url {
        pub host: String,
    }

    /// Accepts `http://host[:port][/...]` and `https://...`; IPv6 hosts in brackets.
    pub fn parse(text: &str) -> Result<Url, String> {
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .ok_or_else(|| format!("--server {text:?} must start with http:// or https://"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let host = if let Some(bracketed) = authority.strip_prefix('[') {
            bracketed.split(']').next().unwrap_or_default().to_string()
        } else {
            authority.split(':').next().unwrap_or_default().to_string()
        };
        if host.is_empty() {
            return Err(format!("--server {text:?} names no host"));
        }
        Ok(Url { host })
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn hosts() {
            assert_eq!(super::parse("http://127.0.0.1:8440").expect("valid").host, "127.0.0.1");
            assert_eq!(super::parse("https://steward.example:8440/").expect("valid").host, "steward.example");
            assert_eq!(super::parse("https://[::1]:8440").expect("valid").host, "::1");
            assert!(super::parse("ftp://x").is_err());
            assert!(super::parse("http://").is_err());
        }
    }
}
