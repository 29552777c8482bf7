//! The agent gateway against misbehaving clients: a certificate from another CA, oversized frames, malformed
//! messages and messages out of order each end the connection with a reason, and the server keeps serving.

#![allow(clippy::unwrap_used)] // Test helpers fail the test on any surprise.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use steward_protocol::{AgentMessage, MAX_FRAME_BYTES, PROTOCOL_VERSION, ServerMessage, read_frame, write_frame};
use support::Server;
use tokio::io::AsyncWriteExt;

struct Identity {
    key_pem: String,
    certificate_pem: String,
    ca_pem: String,
}

/// Enrolls a made-up agent through the API and returns its identity.
fn enroll(server: &Server) -> Identity {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, "rogue");
    let csr = params.serialize_request(&key).and_then(|csr| csr.pem()).expect("CSR");
    let token = server.enrollment_token(1);
    let answer = server
        .api()
        .with_token(None)
        .post("/enrollments", json!({"token": token, "csr_pem": csr, "hostname": "rogue", "agent_version": "test"}));
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    Identity {
        key_pem: key.serialize_pem(),
        certificate_pem: answer.body["certificate_pem"].as_str().unwrap().to_string(),
        ca_pem: answer.body["ca_certificate_pem"].as_str().unwrap().to_string(),
    }
}

async fn connect(
    server: &Server,
    identity: &Identity,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(identity.ca_pem.as_bytes()).unwrap()).unwrap();
    let chain = vec![CertificateDer::from_pem_slice(identity.certificate_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap();
    let config =
        rustls::ClientConfig::builder().with_root_certificates(roots).with_client_auth_cert(chain, key).unwrap();
    let tcp = tokio::net::TcpStream::connect(&server.gateway_address).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector.connect(ServerName::try_from(steward_protocol::GATEWAY_TLS_NAME).unwrap(), tcp).await?;
    // TLS 1.3 reports a refused client certificate only on the first read: make it happen now.
    tls.flush().await?;
    Ok(tls)
}

/// Reads until the server's goodbye and returns its reason.
async fn goodbye_reason<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), read_frame::<ServerMessage, _>(stream, MAX_FRAME_BYTES))
            .await
        {
            Ok(Ok(ServerMessage::Goodbye { reason, .. })) => return reason,
            Ok(Ok(_)) => continue,
            Ok(Err(error)) => return format!("closed without goodbye: {error}"),
            Err(_) => return "no goodbye within 10 s".into(),
        }
    }
}

fn hello() -> AgentMessage {
    AgentMessage::Hello { protocol_version: PROTOCOL_VERSION, agent_version: "test".into(), inventory_digest: None }
}

#[test]
fn misbehaving_agents_are_disconnected() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = Server::start();
    let identity = enroll(&server);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // An oversized frame is refused from its header, before the body is read.
        let mut tls = connect(&server, &identity).await.unwrap();
        write_frame(&mut tls, &hello()).await.unwrap();
        tls.write_all(&(64u32 * 1024 * 1024).to_be_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        let reason = goodbye_reason(&mut tls).await;
        assert!(reason.contains("exceeds the limit"), "{reason}");

        // Malformed JSON and unknown message types.
        for body in [&b"{not json"[..], br#"{"type":"format_disk"}"#] {
            let mut tls = connect(&server, &identity).await.unwrap();
            write_frame(&mut tls, &hello()).await.unwrap();
            tls.write_all(&(body.len() as u32).to_be_bytes()).await.unwrap();
            tls.write_all(body).await.unwrap();
            tls.flush().await.unwrap();
            let reason = goodbye_reason(&mut tls).await;
            assert!(reason.contains("malformed message"), "{reason}");
        }

        // A patch before any hello, and a wrong protocol version.
        let mut tls = connect(&server, &identity).await.unwrap();
        write_frame(&mut tls, &AgentMessage::InventoryPatch { patch: Box::default() }).await.unwrap();
        assert!(goodbye_reason(&mut tls).await.contains("first message must be a hello"));
        let mut tls = connect(&server, &identity).await.unwrap();
        let future = AgentMessage::Hello { protocol_version: 99, agent_version: "x".into(), inventory_digest: None };
        write_frame(&mut tls, &future).await.unwrap();
        assert!(goodbye_reason(&mut tls).await.contains("speaks agent protocol 1"));

        // A certificate from another CA fails the TLS handshake.
        let stranger_ca = rcgen::CertificateParams::new(vec!["other".to_string()]).unwrap();
        let stranger_key = rcgen::KeyPair::generate().unwrap();
        let stranger = Identity {
            key_pem: stranger_key.serialize_pem(),
            certificate_pem: stranger_ca.self_signed(&stranger_key).unwrap().pem(),
            ca_pem: identity.ca_pem.clone(),
        };
        let refused = match connect(&server, &stranger).await {
            Err(_) => true,
            Ok(mut tls) => goodbye_reason(&mut tls).await.starts_with("closed without goodbye"),
        };
        assert!(refused, "a certificate from another CA must not be accepted");

        // After all that, a well-behaved connection still works.
        let mut tls = connect(&server, &identity).await.unwrap();
        write_frame(&mut tls, &hello()).await.unwrap();
        let welcome = read_frame::<ServerMessage, _>(&mut tls, MAX_FRAME_BYTES).await.unwrap();
        assert!(matches!(welcome, ServerMessage::Welcome { send_full_inventory: true, .. }), "{welcome:?}");
    });
    assert_eq!(server.api().get("/health").status, 200);
}
