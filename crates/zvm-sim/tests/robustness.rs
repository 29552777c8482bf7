//! Hostile input never takes the simulator down: arbitrary bytes, and valid requests of every modelled
//! function with bytes changed, get a well-formed reply or a closed connection, and the simulator keeps
//! answering afterwards.

mod support;

use std::net::SocketAddr;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use smapi::functions::*;
use smapi::{Credentials, Reply, RequestFrame, SmapiRequest, encode_request};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zvm_sim::Simulator;

/// Sends bytes, closes the sending side, and reads whatever comes back.
async fn send(address: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the simulator neither answered nor closed the connection");
    reply
}

/// Either nothing (the connection was closed) or one well-formed reply.
fn check(reply: &[u8]) -> Result<(), TestCaseError> {
    if reply.is_empty() {
        return Ok(());
    }
    // A request id alone: the connection was dropped after the request was accepted.
    if reply.len() == 4 {
        return Ok(());
    }
    let parsed = Reply::parse(reply);
    prop_assert!(parsed.is_ok(), "malformed reply {reply:?}: {parsed:?}");
    Ok(())
}

fn frame<R: SmapiRequest>(request: &R) -> Vec<u8> {
    encode_request(request, &Credentials::new(ADMIN, ADMIN_PASSWORD).expect("credentials")).expect("frame")
}

/// A valid request of every kind of parameter the simulator reads.
fn valid_frames() -> Vec<Vec<u8>> {
    vec![
        frame(&ImageCreateDm::from_records("LINUX09", linux_entry("LINUX09"))),
        frame(&ImageReplaceDm::new("LNXIMAGE", vec!["USER LNXIMAGE NOLOG 64M 64M G".into()])),
        frame(&ImageDefinitionUpdateDm::new("LNXIMAGE", vec!["STORAGE_INITIAL=32M".into(), "CPU=CPUADDR=01".into()])),
        frame(&ImageDefinitionQueryDm::new("LNXIMAGE", vec!["*".into()])),
        frame(&ImageVolumeSpaceQueryDm::new("MAINT", VolumeSpaceQuery::Free, VolumeSpaceEntry::Group, "*")),
        frame(&ImageDiskDeleteDm::new("LNXIMAGE", "0100", DataSecurityErase::NoErase)),
        frame(&ImageDeactivate::new("LNXIMAGE", ForceTime::immediately())),
        frame(&VirtualNetworkVswitchSetExtended {
            target: "MAINT".into(),
            switch_name: "VSW1".into(),
            settings: VswitchSettings { grant_userid: Some("LNXIMAGE".into()), ..Default::default() },
        }),
        frame(&VirtualNetworkAdapterCreateExtendedDm {
            target: "LNXIMAGE".into(),
            image_device_number: "1000".into(),
            adapter_type: "QDIO".into(),
            devices: Some(3),
            ..Default::default()
        }),
        frame(&QueryAsynchronousOperationDm::new("MAINT", 1)),
        frame(&ResponseRecovery::new("MAINT", 1)),
    ]
}

/// Panics anywhere in this test binary, the simulator's connection tasks included (a panicking task would
/// only close its connection, which the checks above accept).
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

fn runtime() -> tokio::runtime::Runtime {
    count_panics();
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_get_an_error_or_a_closed_connection(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let runtime = runtime();
        runtime.block_on(async {
            let mut config = config(None);
            config.read_timeout = Duration::from_secs(2);
            let simulator = Simulator::start(config).await.expect("simulator starts");
            let reply = send(simulator.address(), &bytes).await;
            check(&reply)?;
            admin(&simulator).call(&CheckAuthentication::new("MAINT")).await.expect("still answering");
            simulator.shutdown().await;
            prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a simulator task panicked");
            Ok::<(), TestCaseError>(())
        })?;
    }

    #[test]
    fn mutated_requests_never_crash_a_handler(
        which in 0usize..11,
        changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        truncate in proptest::option::of(any::<prop::sample::Index>()),
        fix_length in any::<bool>(),
    ) {
        let runtime = runtime();
        runtime.block_on(async {
            let simulator = start().await;
            let mut request = valid_frames().swap_remove(which);
            // Leave the header (length, function, credentials, target) alone so the handlers get to read.
            let header = RequestFrame::parse(&request).expect("a valid frame");
            let body_start = request.len() - header.parameters.len();
            for (index, byte) in &changes {
                let position = body_start + index.index(request.len() - body_start);
                request[position] = *byte;
            }
            if let Some(at) = truncate {
                request.truncate(4 + at.index(request.len() - 4));
            }
            if fix_length {
                let length = (request.len() - 4) as u32;
                request[..4].copy_from_slice(&length.to_be_bytes());
            }
            let reply = send(simulator.address(), &request).await;
            check(&reply)?;
            admin(&simulator).call(&CheckAuthentication::new("MAINT")).await.expect("still answering");
            simulator.shutdown().await;
            prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a simulator task panicked");
            Ok::<(), TestCaseError>(())
        })?;
    }
}
