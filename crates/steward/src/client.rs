//! A typed client of the Steward REST API, used by every CLI subcommand (and by tests).
//!
//! Errors carry the server's error code and message; transport failures say which server could not be reached.

use serde::Serialize;
use serde::de::DeserializeOwned;
use steward_types::ErrorResponse;
use steward_types::api::Page;
use steward_types::api::operations::{Operation, OperationAccepted};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{message} ({code})")]
    Api { status: u16, code: String, message: String, details: serde_json::Value },
    #[error("cannot reach the Steward server at {server} (is `steward serve` running there?)")]
    Unreachable {
        server: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the server's answer could not be read")]
    Decode(#[source] reqwest::Error),
    #[error("the server's answer is not what this client expects")]
    Malformed(#[source] serde_json::Error),
    #[error("{0}")]
    Setup(String),
}

pub type Result<T> = std::result::Result<T, ClientError>;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for `server` (`http://127.0.0.1:8440`), trusting `ca_pem` for HTTPS when given.
    pub fn new(server: &str, token: Option<String>, ca_pem: Option<&[u8]>) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder().user_agent(concat!("steward-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(pem) {
                let certificate =
                    certificate.map_err(|error| ClientError::Setup(format!("cannot read the CA file: {error}")))?;
                roots
                    .add(certificate)
                    .map_err(|error| ClientError::Setup(format!("cannot use the CA file: {error}")))?;
            }
            let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
            builder = builder.tls_backend_preconfigured(config);
        }
        let http = builder.build().map_err(|error| ClientError::Setup(format!("cannot set up HTTP: {error}")))?;
        Ok(Self { http, base: server.trim_end_matches('/').to_string(), token })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// A request to `path` under `/api/v1`, for a body or an answer that streams ([`Client::send_streaming`]).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path))
    }

    /// Sends `request`; a successful answer is returned unread (its body may stream), an error answer becomes
    /// [`ClientError::Api`].
    pub async fn send_streaming(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response =
            request.send().await.map_err(|source| ClientError::Unreachable { server: self.base.clone(), source })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(error_answer(response).await)
    }

    /// Sends `request`, which asks to switch protocols (a WebSocket); the `101` answer is returned for its
    /// upgrade, an error answer becomes [`ClientError::Api`].
    pub async fn send_upgrade(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response =
            request.send().await.map_err(|source| ClientError::Unreachable { server: self.base.clone(), source })?;
        if response.status() == reqwest::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(response);
        }
        Err(error_answer(response).await)
    }

    /// Sends `request` and reads its JSON answer.
    pub async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T> {
        let response = self.send_streaming(request).await?;
        let status = response.status();
        // `204` never has a body, and `202` has one only when the action runs as an operation.
        let body = if status == reqwest::StatusCode::NO_CONTENT {
            Default::default()
        } else {
            response.bytes().await.map_err(ClientError::Decode)?
        };
        if body.is_empty() {
            return serde_json::from_value(serde_json::Value::Null)
                .map_err(|_| ClientError::Setup("the server answered without a body where one was expected".into()));
        }
        serde_json::from_slice(&body).map_err(ClientError::Malformed)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T> {
        self.send(self.http.get(self.url(path)).query(query)).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send(self.http.put(self.url(path)).json(body)).await
    }

    pub async fn patch<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send(self.http.patch(self.url(path)).json(body)).await
    }

    /// A call answered with no body (`204` or `202`).
    pub async fn post_empty(&self, path: &str) -> Result<()> {
        self.send::<Option<serde_json::Value>>(self.http.post(self.url(path))).await.map(|_| ())
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        self.send::<Option<serde_json::Value>>(self.http.delete(self.url(path))).await.map(|_| ())
    }

    /// Starts an action that runs as an operation (`202 {"operation": ...}`) and returns the operation.
    pub async fn start_operation<B: Serialize>(&self, path: &str, body: &B) -> Result<Operation> {
        let accepted: Option<OperationAccepted> = self.post(path, body).await?;
        accepted.map(|accepted| accepted.operation).ok_or_else(missing_operation)
    }

    /// Deletes a resource; the operation when the server deletes it in the background (`202`), none when the
    /// resource is gone already (`204`).
    pub async fn delete_maybe_operation(&self, path: &str) -> Result<Option<Operation>> {
        let accepted: Option<OperationAccepted> = self.send(self.http.delete(self.url(path))).await?;
        Ok(accepted.map(|accepted| accepted.operation))
    }

    /// One operation by ID, as `GET /operations/{id}` returns it.
    pub async fn operation(&self, id: &str) -> Result<Operation> {
        self.get(&format!("/operations/{}", segment(id)), &[]).await
    }

    /// Every item of a paged list, following `next` until the last page (or `max` items).
    pub async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        max: Option<usize>,
    ) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = query.to_vec();
            query.push(("limit", "1000".to_string()));
            if let Some(after) = &after {
                query.push(("after", after.clone()));
            }
            let page: Page<T> = self.get(path, &query).await?;
            items.extend(page.items);
            if max.is_some_and(|max| items.len() >= max) {
                items.truncate(max.unwrap_or(usize::MAX));
                return Ok(items);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(items),
            }
        }
    }
}

/// The server's error answer as a [`ClientError::Api`].
async fn error_answer(response: reqwest::Response) -> ClientError {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorResponse>(&text) {
        Ok(body) => ClientError::Api {
            status: status.as_u16(),
            code: serde_json::to_value(body.error.code)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            message: body.error.message,
            details: body.error.details,
        },
        Err(_) => ClientError::Api {
            status: status.as_u16(),
            code: "http_error".into(),
            message: format!("the server answered {status}: {}", text.chars().take(200).collect::<String>()),
            details: serde_json::Value::Null,
        },
    }
}

fn missing_operation() -> ClientError {
    ClientError::Setup("the server accepted the action but did not say which operation runs it".into())
}

/// Percent-encodes a path segment (names and IDs may contain `.`; nothing else needs escaping, but be safe).
pub fn segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
