//! Property tests of the frame decoder against arbitrary bytes, as a hostile peer would send: it never panics,
//! never allocates past its limit, and a decoded message re-encodes to a frame that decodes to the same message.

use proptest::prelude::*;
use steward_protocol::{
    AgentMessage, FrameError, MAX_FRAME_BYTES, PROTOCOL_VERSION, SYNC_MARKER, ServerMessage, SyncedFrameReader,
    encode_synced_frame, read_frame, write_frame,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime")
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..512),
        trailer in prop::collection::vec(any::<u8>(), 0..16),
        limit in 0usize..1024,
    ) {
        // A well-formed header over an arbitrary body, then arbitrary bytes: the decoder sees both.
        let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&trailer);
        runtime().block_on(async {
            let mut input = bytes.as_slice();
            loop {
                match read_frame::<AgentMessage, _>(&mut input, limit).await {
                    Ok(message) => {
                        let mut encoded = Vec::new();
                        write_frame(&mut encoded, &message).await.expect("encode");
                        let decoded: AgentMessage = read_frame(&mut encoded.as_slice(), usize::MAX).await.expect("decode");
                        assert_eq!(decoded, message);
                    }
                    Err(FrameError::TooLarge { length, limit: reported }) => {
                        assert!(length > reported);
                        break;
                    }
                    Err(_) => break,
                }
            }
        });
    }

    #[test]
    fn json_shaped_frames_are_decoded_or_refused(body in "\\{\"type\":\"(hello|welcome|goodbye|refresh_inventory|inventory_patch)\"[ -~]{0,80}\\}") {
        runtime().block_on(async {
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(body.as_bytes());
            let _ = read_frame::<AgentMessage, _>(&mut frame.as_slice(), 4096).await;
            let _ = read_frame::<ServerMessage, _>(&mut frame.as_slice(), 4096).await;
        });
    }

    /// Whatever stale or hostile bytes come first (markers and runs of 0xFF included), a reader that goes on after
    /// each error finds the real frame behind them, and never panics.
    #[test]
    fn a_synced_reader_finds_the_frame_behind_any_garbage(
        garbage in prop::collection::vec(prop_oneof![any::<u8>(), Just(0xFFu8), Just(0u8)], 0..256),
        marker_at in prop::option::of(0usize..256),
    ) {
        let mut bytes = garbage;
        if let Some(position) = marker_at {
            let position = position.min(bytes.len());
            bytes.splice(position..position, SYNC_MARKER);
        }
        let hello = AgentMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: "1.0".into(),
            inventory_digest: None,
        };
        bytes.extend(encode_synced_frame(&hello).expect("encode"));
        runtime().block_on(async {
            let mut input = bytes.as_slice();
            let mut reader = SyncedFrameReader::new(MAX_FRAME_BYTES);
            let mut last = None;
            for _ in 0..bytes.len() + 2 {
                match reader.read::<AgentMessage, _>(&mut input).await {
                    Ok(message) => last = Some(message),
                    Err(FrameError::Closed) => break,
                    Err(_) => {}
                }
            }
            assert_eq!(last, Some(hello));
        });
    }
}
