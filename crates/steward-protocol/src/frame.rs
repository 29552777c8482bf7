//! Length-prefixed JSON framing: each frame is a 4-byte big-endian length followed by that many bytes of JSON.
//!
//! A frame longer than the reader's limit is refused before any of its body is read, so a misbehaving peer
//! cannot make the other side allocate more than the limit.

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame either side accepts by default: room for an inventory with tens of thousands of packages.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed by peer")]
    Closed,
    #[error("frame of {length} bytes exceeds the limit of {limit} bytes")]
    TooLarge { length: usize, limit: usize },
    #[error("malformed message")]
    Malformed(#[source] serde_json::Error),
    #[error("input/output error")]
    Io(#[from] std::io::Error),
    /// On a synchronised channel (see [`crate::synced`]): no marker where a frame should start (`found` holds
    /// the bytes that were there instead), or a marker inside a frame's body.
    #[error("the channel is out of step: expected a frame marker, found {found:02x?}")]
    OutOfSync { found: [u8; 4] },
}

/// Reads one frame and decodes it; `Closed` when the peer closed the connection cleanly between frames.
pub async fn read_frame<T: DeserializeOwned, R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<T, FrameError> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(error) => return Err(FrameError::Io(error)),
    }
    let length = u32::from_be_bytes(header) as usize;
    if length > limit {
        return Err(FrameError::TooLarge { length, limit });
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(FrameError::Malformed)
}

/// Encodes one message as a frame and writes it, flushing the writer.
pub async fn write_frame<T: Serialize, W: AsyncWrite + Unpin>(writer: &mut W, message: &T) -> Result<(), FrameError> {
    let body = serde_json::to_vec(message).map_err(FrameError::Malformed)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge { length: body.len(), limit: MAX_FRAME_BYTES });
    }
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{AgentMessage, PROTOCOL_VERSION};

    #[tokio::test]
    async fn round_trip() {
        let message = AgentMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: "1.0".into(),
            inventory_digest: None,
        };
        let mut buffer = Vec::new();
        write_frame(&mut buffer, &message).await.unwrap();
        let decoded: AgentMessage = read_frame(&mut buffer.as_slice(), MAX_FRAME_BYTES).await.unwrap();
        assert_eq!(decoded, message);
    }

    #[tokio::test]
    async fn oversized_frame_is_refused_before_reading_the_body() {
        let mut input = Vec::new();
        input.extend_from_slice(&(1_000_000u32).to_be_bytes());
        let error = read_frame::<AgentMessage, _>(&mut input.as_slice(), 1000).await.unwrap_err();
        assert!(matches!(error, FrameError::TooLarge { length: 1_000_000, limit: 1000 }));
    }

    #[tokio::test]
    async fn unknown_fields_and_types_are_malformed() {
        for body in [
            &br#"{"type":"hello","protocol_version":1,"agent_version":"x","inventory_digest":null,"extra":1}"#[..],
            br#"{"type":"launch_missiles"}"#,
            b"not json",
        ] {
            let mut input = (body.len() as u32).to_be_bytes().to_vec();
            input.extend_from_slice(body);
            let error = read_frame::<AgentMessage, _>(&mut input.as_slice(), MAX_FRAME_BYTES).await.unwrap_err();
            assert!(matches!(error, FrameError::Malformed(_)), "{error:?}");
        }
    }

    #[tokio::test]
    async fn clean_close_between_frames() {
        let error = read_frame::<AgentMessage, _>(&mut &b""[..], MAX_FRAME_BYTES).await.unwrap_err();
        assert!(matches!(error, FrameError::Closed));
    }
}
