//! The client against a small SMAPI responder on 127.0.0.1 that replays the recorded z/VM 7.1 exchanges, or
//! follows a script: asynchronous operations to poll, connections dropped after the request id, refused
//! connections, a crowd of parallel calls, a server that never answers, TLS.

mod support;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smapi::client::{Connecting, Stream};
use smapi::functions::*;
use smapi::{
    ClientConfig, Credentials, Error, ErrorKind, Outcome, Reply, RequestFrame, SmapiClient, TcpTransport, TlsSettings,
    Transport, interpret,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the responder does with one request.
enum Action {
    /// Sends this reply (the request ids are filled in).
    Reply(Reply),
    /// Sends the reply after a pause.
    ReplyAfter(Duration, Reply),
    /// Sends the request id, then closes the connection: the reply is lost.
    DropAfterRequestId,
    /// Sends the request id, then nothing more until the client gives up.
    StallAfterRequestId,
}

type Handler = Arc<dyn Fn(&RequestFrame) -> Action + Send + Sync>;

/// A responder listening on 127.0.0.1, recording every request and how many connections were open at once.
struct Responder {
    address: SocketAddr,
    requests: Arc<Mutex<Vec<(u32, RequestFrame)>>>,
    most_open: Arc<AtomicUsize>,
}

impl Responder {
    async fn start(handler: Handler) -> Responder {
        Responder::start_with_tls(handler, None).await
    }

    async fn start_with_tls(handler: Handler, tls: Option<tokio_rustls::TlsAcceptor>) -> Responder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind on loopback");
        let address = listener.local_addr().expect("bound address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let most_open = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let next_request_id = Arc::new(AtomicU32::new(1000));
        let (log, most) = (Arc::clone(&requests), Arc::clone(&most_open));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, log, most, open, ids, tls) =
                    (handler.clone(), log.clone(), most.clone(), open.clone(), next_request_id.clone(), tls.clone());
                tokio::spawn(async move {
                    let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now_open, Ordering::SeqCst);
                    let connection = Open { counter: open, released: false };
                    let request_id = ids.fetch_add(1, Ordering::SeqCst);
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve(stream, request_id, &handler, &log, connection).await;
                            }
                        }
                        None => serve(stream, request_id, &handler, &log, connection).await,
                    }
                });
            }
        });
        Responder { address, requests, most_open }
    }

    fn functions(&self) -> Vec<String> {
        self.requests.lock().expect("request log").iter().map(|(_, frame)| frame.function.clone()).collect()
    }

    fn requests(&self) -> Vec<(u32, RequestFrame)> {
        self.requests.lock().expect("request log").clone()
    }
}

/// One open connection in the responder's count. It leaves the count just before the last bytes of the reply
/// go out, so the client cannot have opened its next connection while this one is still counted.
struct Open {
    counter: Arc<AtomicUsize>,
    released: bool,
}

impl Open {
    fn release(&mut self) {
        if !self.released {
            self.released = true;
            self.counter.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.release();
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request_id: u32,
    handler: &Handler,
    log: &Mutex<Vec<(u32, RequestFrame)>>,
    mut connection: Open,
) {
    let Ok(length) = stream.read_u32().await else { return };
    let mut body = vec![0u8; length as usize];
    if stream.read_exact(&mut body).await.is_err() {
        return;
    }
    let mut frame = length.to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let request = RequestFrame::parse(&frame).expect("the client sends well-formed frames");
    let action = handler(&request);
    log.lock().expect("request log").push((request_id, request));
    let id = request_id.to_be_bytes();
    let (delay, mut reply) = match action {
        Action::Reply(reply) => (None, reply),
        Action::ReplyAfter(delay, reply) => (Some(delay), reply),
        Action::DropAfterRequestId => {
            let _ = stream.write_all(&id).await;
            let _ = stream.shutdown().await;
            return;
        }
        Action::StallAfterRequestId => {
            let _ = stream.write_all(&id).await;
            // Hold the connection open until the client closes it.
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
            return;
        }
    };
    let _ = stream.write_all(&id).await;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    reply.request_id = request_id;
    reply.reply_request_id = request_id;
    connection.release();
    let _ = stream.write_all(&reply.encode()[4..]).await;
    let _ = stream.shutdown().await;
}

fn reply(return_code: i32, reason_code: i32, output: &[u8]) -> Reply {
    Reply { request_id: 0, reply_request_id: 0, return_code, reason_code, output: output.to_vec() }
}

/// Answers every recorded request with its recorded reply, anything else with 900/12 (no such function).
fn replay() -> Handler {
    let recorded: HashMap<Vec<u8>, Vec<u8>> =
        support::cached_vectors().iter().map(|vector| (vector.request.clone(), vector.response.clone())).collect();
    let credentials = support::recorded_credentials();
    Arc::new(move |request: &RequestFrame| {
        let frame = reencode(request, &credentials);
        match recorded.get(&frame) {
            Some(response) => Action::Reply(Reply::parse(response).expect("recorded replies parse")),
            None => Action::Reply(reply(900, 12, b"")),
        }
    })
}

/// The request frame as the client sent it (the responder only keeps the parsed form).
fn reencode(request: &RequestFrame, credentials: &Credentials) -> Vec<u8> {
    let mut body = Vec::new();
    for text in [request.function.as_str(), credentials.userid(), request.password.as_str(), request.target.as_str()] {
        body.extend_from_slice(&(text.len() as u32).to_be_bytes());
        body.extend_from_slice(text.as_bytes());
    }
    body.extend_from_slice(&request.parameters);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn test_config(address: SocketAddr) -> ClientConfig {
    let mut config = ClientConfig::new(address.to_string());
    config.connect_timeout = Duration::from_secs(10);
    config.connect_retry_delays = vec![Duration::from_millis(1); 3];
    config.request_timeout = Duration::from_secs(30);
    config.long_request_timeout = Duration::from_secs(60);
    config.recovery_delay = Duration::from_millis(1);
    config.poll_interval = Duration::from_millis(1);
    config.poll_attempts = 5;
    config
}

fn client(responder: &Responder) -> SmapiClient {
    SmapiClient::new(test_config(responder.address), support::recorded_credentials())
}

fn recorded_reply(function: &str, case: &str) -> Reply {
    let vector = support::cached_vectors()
        .iter()
        .find(|vector| vector.function == function && vector.case == case)
        .expect("recorded vector");
    Reply::parse(&vector.response).expect("recorded reply parses")
}

#[tokio::test]
async fn replays_recorded_exchanges() {
    let responder = Responder::start(replay()).await;
    let client = client(&responder);

    let status = client.call(&ImageStatusQuery::new("gt@pong")).await.unwrap();
    assert_eq!(status.active_images, ["GT@PONG"]);

    let request = ImageActiveConfigurationQuery::new("gt@pong");
    let configuration = client.call(&request).await.unwrap();
    let expected = interpret(&request, &recorded_reply("Image_Active_Configuration_Query", "1")).unwrap().into_output();
    assert_eq!(configuration, expected);
    assert_eq!(configuration.devices.len(), 8);

    let switches = client.call(&VirtualNetworkVswitchQueryExtended::new("maint", "*", "YES")).await.unwrap();
    let names: Vec<&str> = switches.iter().map(|switch| switch.switch_name.as_str()).collect();
    assert_eq!(names, ["DTCSMAPI", "EXTERN", "GT@VSWI", "GT@VSW1", "GT@VSW2"]);

    let info = client.call(&SystemInfoQuery::new("maint")).await.unwrap();
    assert_eq!(info.cp_level, "z/VM Version 7 Release 1.0, service level 1801 (64-bit)");

    let records = support::cached_vectors()
        .iter()
        .find(|vector| vector.function == "Image_Create_DM")
        .map(|vector| {
            vector.kwargs["image_record_array"]
                .as_array()
                .unwrap()
                .iter()
                .map(|line| line.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap();
    let created = client.call(&ImageCreateDm::from_records("gt@pong", records)).await.unwrap();
    assert_eq!(created.operation_id, None);

    let error =
        client.call(&ImageDefinitionQueryDm::new("gt@ping", vec!["BOGUS_KEYWORD=BAD".into()])).await.unwrap_err();
    let call = error.call_error().expect("a return code from the server");
    assert_eq!((call.return_code, call.reason_code, call.kind), (8, 3002, ErrorKind::InvalidParameter));
    assert_eq!(call.diagnostics, ["UNKNOWN_DIRECTORY_KEYWORD_PARAMETER=BOGUS_KEYWORD=BAD"]);
    assert!(error.to_string().contains("invalid parameter name"), "{error}");

    // A request the recording does not hold gets "function does not exist" from the responder.
    let error = client.call(&ImageStatusQuery::new("nobody")).await.unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::ServerError));
}

/// A responder for one asynchronous call: `start` answers the call, then each poll takes the next reason code.
fn asynchronous(start: Reply, polls: Vec<i32>) -> Handler {
    let polls = Mutex::new(polls.into_iter());
    Arc::new(move |request: &RequestFrame| {
        if request.function == "Query_Asynchronous_Operation_DM" {
            let reason = polls.lock().expect("poll script").next().unwrap_or(104);
            Action::Reply(reply(0, reason, b""))
        } else {
            Action::Reply(start.clone())
        }
    })
}

fn polled_operation_ids(responder: &Responder) -> Vec<(String, u32)> {
    responder
        .requests()
        .into_iter()
        .filter(|(_, frame)| frame.function == "Query_Asynchronous_Operation_DM")
        .map(|(_, frame)| {
            (frame.target, u32::from_be_bytes(frame.parameters[..4].try_into().expect("an int4 operation id")))
        })
        .collect()
}

#[tokio::test]
async fn polls_asynchronous_operations_until_they_end() {
    // Image_Delete_DM: 592/0 with the operation id in the output; two polls in progress, then success.
    let responder = Responder::start(asynchronous(reply(592, 0, &77u32.to_be_bytes()), vec![104, 104, 100])).await;
    let deleted = client(&responder).call(&ImageDeleteDm::new("linux01", DataSecurityErase::Erase)).await.unwrap();
    assert_eq!(deleted.operation_id, Some(77));
    assert_eq!(polled_operation_ids(&responder), vec![("linux01".to_owned(), 77); 3]);

    // Image_Lock_DM: the reason code is the operation id.
    let responder = Responder::start(asynchronous(reply(592, 55, b""), vec![100])).await;
    client(&responder).call(&ImageLockDm::new("linux01", "")).await.unwrap();
    assert_eq!(polled_operation_ids(&responder), [("linux01".to_owned(), 55)]);

    // A keyword function: 592/4 with the operation data as NUL-terminated strings.
    let responder = Responder::start(asynchronous(reply(592, 4, b"\x00\x00\x00\x0312\x00"), vec![100])).await;
    let update = ImageDefinitionUpdateDm::new("linux01", vec!["STORAGE_INITIAL=2G".into()]);
    let output = client(&responder).call(&update).await.unwrap();
    assert_eq!(output.asynch_data, ["12"]);
    assert_eq!(polled_operation_ids(&responder), [("linux01".to_owned(), 12)]);

    // call_once leaves the polling to the caller.
    let responder = Responder::start(asynchronous(reply(592, 0, &9u32.to_be_bytes()), vec![])).await;
    let outcome =
        client(&responder).call_once(&ImageDeleteDm::new("linux01", DataSecurityErase::NoErase)).await.unwrap();
    assert!(matches!(outcome, Outcome::Started { ref operation, .. } if operation.operation_ids == [9]));
    assert!(polled_operation_ids(&responder).is_empty());
}

#[tokio::test]
async fn reports_asynchronous_operations_that_fail_or_never_end() {
    let responder = Responder::start(asynchronous(reply(592, 0, &5u32.to_be_bytes()), vec![104, 108])).await;
    let error = client(&responder).call(&ImageDeleteDm::new("linux01", DataSecurityErase::NoErase)).await.unwrap_err();
    assert!(matches!(error, Error::AsynchronousOperationFailed { operation_id: 5, reason_code: 108, .. }), "{error:?}");

    let responder = Responder::start(asynchronous(reply(592, 0, &6u32.to_be_bytes()), vec![])).await;
    let error = client(&responder).call(&ImageDeleteDm::new("linux01", DataSecurityErase::NoErase)).await.unwrap_err();
    assert!(matches!(error, Error::AsynchronousOperationStillRunning { operation_id: 6, polls: 5, .. }), "{error:?}");
    assert_eq!(polled_operation_ids(&responder).len(), 5);

    let responder = Responder::start(asynchronous(reply(592, 4, b""), vec![])).await;
    let update = ImageDefinitionUpdateDm::new("linux01", vec!["STORAGE_INITIAL=2G".into()]);
    let error = client(&responder).call(&update).await.unwrap_err();
    assert!(matches!(error, Error::AsynchronousOperationNotPollable { .. }), "{error:?}");
}

/// Drops the first Image_Activate after its request id; answers Response_Recovery for that id with `recovered`.
fn lossy(recovered: Reply) -> Handler {
    let activations = AtomicUsize::new(0);
    Arc::new(move |request: &RequestFrame| match request.function.as_str() {
        "Image_Activate" if activations.fetch_add(1, Ordering::SeqCst) == 0 => Action::DropAfterRequestId,
        "Image_Activate" => Action::Reply(reply(0, 0, b"")),
        "Response_Recovery" => {
            assert_eq!(request.parameters, 1000u32.to_be_bytes(), "recovery asks for the first request id");
            Action::Reply(recovered.clone())
        }
        other => panic!("unexpected {other}"),
    })
}

#[tokio::test]
async fn recovers_a_reply_lost_after_the_request_id() {
    let responder = Responder::start(lossy(reply(200, 8, b""))).await;
    let error = client(&responder).call(&ImageActivate::new("linux01")).await.unwrap_err();
    // The recovered reply is the original one: the guest was already active.
    assert_eq!(error.kind(), Some(ErrorKind::AlreadyActive));
    assert_eq!(responder.functions(), ["Image_Activate", "Response_Recovery"]);
    assert_eq!(responder.requests()[1].1.target, "linux01");

    // The server knows no such request (4/4): the client sends the request again, once.
    let responder = Responder::start(lossy(reply(4, 4, b""))).await;
    client(&responder).call(&ImageActivate::new("linux01")).await.unwrap();
    assert_eq!(responder.functions(), ["Image_Activate", "Response_Recovery", "Image_Activate"]);
}

#[tokio::test]
async fn gives_up_when_recovery_fails_too() {
    let handler: Handler = Arc::new(|_: &RequestFrame| Action::DropAfterRequestId);
    let responder = Responder::start(handler).await;
    let error = client(&responder).call(&ImageActivate::new("linux01")).await.unwrap_err();
    assert!(matches!(error, Error::ReplyLost { function: "Image_Activate", request_id: 1000, .. }), "{error:?}");
    assert_eq!(responder.functions(), ["Image_Activate", "Response_Recovery"]);
}

/// Refuses the first `refusals` connections, then connects over TCP.
struct Refusing {
    refusals: usize,
    attempts: AtomicUsize,
    inner: TcpTransport,
}

impl Transport for Refusing {
    fn connect(&self) -> Connecting<'_> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
        if attempt < self.refusals {
            return Box::pin(async { Err::<Box<dyn Stream>, _>(io::Error::from(io::ErrorKind::ConnectionRefused)) });
        }
        self.inner.connect()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[tokio::test]
async fn retries_refused_connections() {
    let responder = Responder::start(replay()).await;
    let transport = Arc::new(Refusing {
        refusals: 3,
        attempts: AtomicUsize::new(0),
        inner: TcpTransport::new(responder.address.to_string()),
    });
    let client =
        SmapiClient::with_transport(test_config(responder.address), support::recorded_credentials(), transport.clone());
    client.call(&ImageStatusQuery::new("gt@pong")).await.unwrap();
    assert_eq!(transport.attempts.load(Ordering::SeqCst), 4);

    let transport = Arc::new(Refusing {
        refusals: 10,
        attempts: AtomicUsize::new(0),
        inner: TcpTransport::new(responder.address.to_string()),
    });
    let client =
        SmapiClient::with_transport(test_config(responder.address), support::recorded_credentials(), transport);
    let error = client.call(&ImageStatusQuery::new("gt@pong")).await.unwrap_err();
    assert!(matches!(error, Error::Connect { attempts: 4, .. }), "{error:?}");
}

#[tokio::test]
async fn bounds_the_connections_open_at_once() {
    let handler: Handler = Arc::new(|_: &RequestFrame| {
        Action::ReplyAfter(Duration::from_millis(20), reply(0, 0, b"\x00\x00\x00\x0b\x00\x00\x00\x07LINUX01"))
    });
    let responder = Responder::start(handler).await;
    let mut config = test_config(responder.address);
    config.max_concurrent_requests = 2;
    let client = SmapiClient::new(config, support::recorded_credentials());
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.call(&ImageStatusQuery::new("linux01")).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().active_images, ["LINUX01"]);
    }
    assert_eq!(responder.requests().len(), 8);
    let most_open = responder.most_open.load(Ordering::SeqCst);
    assert!((1..=2).contains(&most_open), "{most_open} connections were open at once");
}

#[tokio::test]
async fn times_out_a_server_that_does_not_answer() {
    let handler: Handler = Arc::new(|_: &RequestFrame| Action::StallAfterRequestId);
    let responder = Responder::start(handler).await;
    let mut config = test_config(responder.address);
    config.request_timeout = Duration::from_millis(200);
    let client = SmapiClient::new(config, support::recorded_credentials());
    let error = client.call(&ImageStatusQuery::new("linux01")).await.unwrap_err();
    assert!(matches!(error, Error::Timeout { stage: "waiting for the reply", .. }), "{error:?}");
}

#[tokio::test]
async fn long_calls_wait_longer() {
    let handler: Handler =
        Arc::new(|_: &RequestFrame| Action::ReplyAfter(Duration::from_millis(500), reply(0, 0, b"\xff\xff\xff\xff")));
    let responder = Responder::start(handler).await;
    let mut config = test_config(responder.address);
    config.request_timeout = Duration::from_millis(100);
    config.long_request_timeout = Duration::from_secs(60);
    let client = SmapiClient::new(config, support::recorded_credentials());
    let copy = ImageDiskCopyDm {
        target: "linux02".into(),
        vdev: "0100".into(),
        source_image: "linux01".into(),
        source_vdev: "0100".into(),
        allocation_type: "AUTOG".into(),
        area_or_volser: "POOL1".into(),
        mode: "MR".into(),
        passwords: DiskPasswords::default(),
    };
    assert_eq!(client.call(&copy).await.unwrap().operation_id, None);
    let error = client.call(&ImageDiskDeleteDm::new("linux02", "0100", DataSecurityErase::NoErase)).await.unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
}

#[tokio::test]
async fn refuses_an_oversized_reply_before_reading_it() {
    let handler: Handler = Arc::new(|_: &RequestFrame| Action::Reply(reply(0, 0, &vec![0u8; 4096])));
    let responder = Responder::start(handler).await;
    let mut config = test_config(responder.address);
    config.max_output_bytes = 1024;
    let client = SmapiClient::new(config, support::recorded_credentials());
    let error = client.call(&ImageNameQueryDm::new("maint")).await.unwrap_err();
    assert!(
        matches!(error, Error::Decode { source: smapi::DecodeError::OutputLengthTooLarge { limit: 1024, .. }, .. }),
        "{error:?}"
    );
}

fn tls_pair(name: &str) -> (tokio_rustls::TlsAcceptor, Arc<rustls::ClientConfig>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("self-signed certificate");
    let certificate = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![certificate.clone()], key)
        .expect("server certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate).expect("root certificate");
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (tokio_rustls::TlsAcceptor::from(Arc::new(server)), Arc::new(client))
}

#[tokio::test]
async fn speaks_tls_when_configured() {
    let (acceptor, client_tls) = tls_pair("vsmreqin.test");
    let responder = Responder::start_with_tls(replay(), Some(acceptor)).await;

    let mut config = test_config(responder.address);
    config.tls = Some(TlsSettings {
        config: client_tls.clone(),
        server_name: rustls::pki_types::ServerName::try_from("vsmreqin.test").unwrap(),
    });
    let client = SmapiClient::new(config, support::recorded_credentials());
    let status = client.call(&ImageStatusQuery::new("gt@pong")).await.unwrap();
    assert_eq!(status.active_images, ["GT@PONG"]);

    let mut config = test_config(responder.address);
    config.tls = Some(TlsSettings {
        config: client_tls,
        server_name: rustls::pki_types::ServerName::try_from("other.test").unwrap(),
    });
    let client = SmapiClient::new(config, support::recorded_credentials());
    let error = client.call(&ImageStatusQuery::new("gt@pong")).await.unwrap_err();
    assert!(matches!(error, Error::Tls { .. }), "{error:?}");
}
