//! `Response_Recovery`: a connection dropped after the request id is recovered by the client; the simulator
//! returns a reply only to the user who made the request, and 4/4 for a request it does not know.

mod support;

use smapi::functions::*;
use smapi::{Credentials, Reply, encode_request};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One raw exchange: the request id and the reply.
async fn exchange(address: std::net::SocketAddr, frame: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(frame).await.expect("send");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.expect("receive");
    Reply::parse(&bytes).expect("a well-formed reply")
}

#[tokio::test]
async fn a_lost_reply_is_recovered() {
    let simulator = start().await;
    let admin = admin(&simulator);
    simulator.add_fault("drop-after-request-id=Image_Create_DM".parse().expect("a fault"));
    let created = admin.call(&ImageCreateDm::from_records("LINUX01", linux_entry("LINUX01"))).await;
    assert_eq!(created.expect("recovered through Response_Recovery").operation_id, None);
    assert!(simulator.faults().is_empty(), "the drop fired once");
    assert_eq!(codes(admin.call(&ImageCreateDm::from_records("LINUX01", linux_entry("LINUX01"))).await), (400, 8));

    // A drop of any function, here an asynchronous one: the recovered 592 is polled as usual.
    simulator.add_fault("drop-after-request-id=*".parse().expect("a fault"));
    let disk = ImageDiskDeleteDm::new("LINUX01", "0100", DataSecurityErase::NoErase);
    admin.call(&disk).await.expect("recovered and polled");
    assert!(simulator.state().directory.entries["LINUX01"].minidisk("0100").is_none());

    assert_eq!(codes(admin.call_once(&ResponseRecovery::new("MAINT", 12345)).await), (4, 4));
    simulator.shutdown().await;
}

#[tokio::test]
async fn replies_are_recovered_for_their_own_user_only() {
    let simulator = start().await;
    let credentials = Credentials::new(ADMIN, ADMIN_PASSWORD).expect("credentials");
    let frame = encode_request(&ImageQueryDm::new("LNXIMAGE"), &credentials).expect("frame");
    let original = exchange(simulator.address(), &frame).await;
    assert_eq!((original.return_code, original.reply_request_id), (0, original.request_id));

    let recovery = encode_request(&ResponseRecovery::new("MAINT", original.request_id), &credentials).expect("frame");
    let recovered = exchange(simulator.address(), &recovery).await;
    assert_ne!(recovered.request_id, original.request_id, "the recovery is a request of its own");
    assert_eq!(recovered.reply_request_id, original.request_id, "the reply is the original one");
    assert_eq!((recovered.return_code, &recovered.output), (0, &original.output));

    let operator = Credentials::new(OPERATOR, OPERATOR_PASSWORD).expect("credentials");
    let foreign = encode_request(&ResponseRecovery::new("MAINT", original.request_id), &operator).expect("frame");
    let refused = exchange(simulator.address(), &foreign).await;
    assert_eq!((refused.return_code, refused.reason_code), (4, 4));
    simulator.shutdown().await;
}
