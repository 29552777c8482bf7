//! Framing for a byte channel without connection boundaries: the virtio-serial port between a guest and its
//! hypervisor, where either end may come and go while the other keeps the channel open, so a reader can start in
//! the middle of a frame or find the tail of a frame whose writer died.
//!
//! Every frame is the ordinary length-prefixed JSON frame of [`crate::frame`] preceded by [`SYNC_MARKER`], four
//! `0xFF` bytes. That sequence cannot occur inside a valid frame stream: `0xFF` is never part of UTF-8 (so never
//! of a JSON body), and a length prefix never exceeds [`MAX_FRAME_BYTES`](crate::MAX_FRAME_BYTES), so its first
//! byte is 0. A [`SyncedFrameReader`] therefore
//!
//! - starts *hunting*: it discards bytes until it finds a marker, so stale bytes from an earlier conversation
//!   are skipped;
//! - then expects a marker before every frame, and reports [`FrameError::OutOfSync`] at once when anything else
//!   is there, instead of taking garbage for a length and waiting for megabytes that never come;
//! - reports [`FrameError::OutOfSync`] as well when a marker shows up inside a frame's body: the peer started
//!   over while that frame was half written.
//!
//! ```text
//!   FF FF FF FF | 00 00 00 2A | {"type":"hello",...} | FF FF FF FF | 00 00 01 07 | {"type":"inventory",...}
//!   └─ marker ─┘ └─ length ──┘ └──── JSON body ────┘
//! ```
//!
//! Reading is cancel-safe: everything read so far is kept in the reader, so [`SyncedFrameReader::read`] may be
//! dropped in a `select!` and called again without losing bytes.

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::{FrameError, MAX_FRAME_BYTES};

/// The four bytes before every frame on a synchronised channel.
pub const SYNC_MARKER: [u8; 4] = [0xFF; 4];

/// A buffer this large or larger is given back once it has been drained (a whole inventory passes through it).
const KEEP_BUFFER_BYTES: usize = 64 * 1024;

/// The marker, the length prefix and the JSON body of `message`, as one buffer (one write keeps a frame whole on
/// the channel as far as the kernel allows).
pub fn encode_synced_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(message).map_err(FrameError::Malformed)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge { length: body.len(), limit: MAX_FRAME_BYTES });
    }
    let mut frame = Vec::with_capacity(body.len() + 8);
    frame.extend_from_slice(&SYNC_MARKER);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Writes one message as a synchronised frame and flushes the writer.
pub async fn write_synced_frame<T: Serialize, W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &T,
) -> Result<(), FrameError> {
    let frame = encode_synced_frame(message)?;
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads synchronised frames; see the module documentation.
pub struct SyncedFrameReader {
    buffer: Vec<u8>,
    hunting: bool,
    limit: usize,
    /// Bytes discarded while hunting, for the log.
    discarded: u64,
    /// How far the frame at the start of the buffer was already searched for a marker, so that a large frame
    /// arriving in small pieces is searched once, not once per piece.
    scanned: usize,
}

impl SyncedFrameReader {
    /// A reader that first hunts for a marker, refusing frames longer than `limit`.
    pub fn new(limit: usize) -> Self {
        Self { buffer: Vec::new(), hunting: true, limit, discarded: 0, scanned: 0 }
    }

    /// How many bytes were skipped so far while looking for a marker.
    pub fn discarded_bytes(&self) -> u64 {
        self.discarded
    }

    /// Reads the next frame. `Closed` when the channel reports end of file; after any other error the reader
    /// hunts for the next marker again, so a caller may go on reading.
    pub async fn read<T: DeserializeOwned, R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> Result<T, FrameError> {
        loop {
            match self.parse_buffered() {
                Ok(Some(body)) => {
                    let decoded = serde_json::from_slice(&body).map_err(FrameError::Malformed);
                    if decoded.is_err() {
                        self.hunting = true;
                    }
                    return decoded;
                }
                Ok(None) => {}
                Err(error) => {
                    self.hunting = true;
                    return Err(error);
                }
            }
            // Room for the rest of the frame when its length is known, else for a small frame.
            let wanted = self.pending_frame_length().map_or(4096, |length| length.saturating_sub(self.buffer.len()));
            self.buffer.reserve(wanted.clamp(4096, 1024 * 1024));
            // `read_buf` is cancel-safe: either bytes were appended to the buffer or nothing happened.
            if reader.read_buf(&mut self.buffer).await? == 0 {
                return Err(FrameError::Closed);
            }
        }
    }

    /// The total length (marker, prefix, body) of the frame at the start of the buffer, once its prefix is in.
    fn pending_frame_length(&self) -> Option<usize> {
        if self.hunting || self.buffer.len() < 8 {
            return None;
        }
        let length = u32::from_be_bytes([self.buffer[4], self.buffer[5], self.buffer[6], self.buffer[7]]) as usize;
        Some(length.min(self.limit) + 8)
    }

    /// Takes one whole frame's body off the buffer, if one is there.
    fn parse_buffered(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let result = self.parse_buffered_frame();
        if !matches!(result, Ok(None)) {
            self.scanned = 0;
        }
        result
    }

    fn parse_buffered_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.hunting {
            self.scanned = 0;
            match hunt_marker(&self.buffer) {
                Hunt::Found(position) => {
                    self.discarded += position as u64;
                    self.buffer.drain(..position);
                    self.hunting = false;
                }
                Hunt::NeedMore(keep_from) => {
                    self.discarded += keep_from as u64;
                    self.buffer.drain(..keep_from);
                    return Ok(None);
                }
            }
        }
        let header_bytes = self.buffer.len().min(4);
        if self.buffer[..header_bytes] != SYNC_MARKER[..header_bytes] {
            let mut found = [0u8; 4];
            found[..header_bytes].copy_from_slice(&self.buffer[..header_bytes]);
            self.buffer.drain(..1);
            return Err(FrameError::OutOfSync { found });
        }
        if self.buffer.len() < 8 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([self.buffer[4], self.buffer[5], self.buffer[6], self.buffer[7]]) as usize;
        if length > self.limit {
            // Drop the marker so that hunting starts after it.
            self.buffer.drain(..4);
            return Err(FrameError::TooLarge { length, limit: self.limit });
        }
        let available = (self.buffer.len() - 8).min(length);
        // A marker after this one's start, in the length prefix or the body: the writer started over in the middle
        // of this frame (a length prefix holds at most two 0xFF in a row, a body none).
        let scan_from = self.scanned.saturating_sub(SYNC_MARKER.len() - 1).max(1);
        if let Some(position) = find_marker(&self.buffer[scan_from..8 + available]) {
            self.buffer.drain(..scan_from + position);
            return Err(FrameError::OutOfSync { found: SYNC_MARKER });
        }
        self.scanned = 8 + available;
        if available < length {
            return Ok(None);
        }
        let body = self.buffer[8..8 + length].to_vec();
        self.buffer.drain(..8 + length);
        if self.buffer.is_empty() && self.buffer.capacity() > KEEP_BUFFER_BYTES {
            self.buffer = Vec::new();
        }
        Ok(Some(body))
    }
}

fn find_marker(bytes: &[u8]) -> Option<usize> {
    bytes.windows(SYNC_MARKER.len()).position(|window| window == SYNC_MARKER)
}

/// Where hunting got to in the buffered bytes.
enum Hunt {
    /// A marker starts here.
    Found(usize),
    /// No marker yet; the bytes before this position can go (the rest may be the start of one).
    NeedMore(usize),
}

/// Finds the first marker. Stale bytes may end in `0xFF` (the low bytes of a cut-off length prefix), so within a
/// run of more than four `0xFF` the marker is the last four: the byte after a real marker is the first byte of a
/// length prefix, which is always 0.
fn hunt_marker(bytes: &[u8]) -> Hunt {
    let Some(mut position) = find_marker(bytes) else {
        return Hunt::NeedMore(bytes.len().saturating_sub(SYNC_MARKER.len() - 1));
    };
    while bytes.get(position + SYNC_MARKER.len()) == Some(&0xFF) {
        position += 1;
    }
    if position + SYNC_MARKER.len() == bytes.len() { Hunt::NeedMore(position) } else { Hunt::Found(position) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{AgentMessage, PROTOCOL_VERSION, ServerMessage};

    fn hello() -> AgentMessage {
        AgentMessage::Hello { protocol_version: PROTOCOL_VERSION, agent_version: "1.0".into(), inventory_digest: None }
    }

    #[tokio::test]
    async fn skips_stale_bytes_before_the_first_marker() {
        let mut input = b"\x00\x00\x01\x00tail of an old frame\xff\xff".to_vec();
        input.extend(encode_synced_frame(&hello()).unwrap());
        input.extend(encode_synced_frame(&ServerMessage::HelloRequest).unwrap());
        let mut reader = SyncedFrameReader::new(MAX_FRAME_BYTES);
        let mut stream = input.as_slice();
        assert_eq!(reader.read::<AgentMessage, _>(&mut stream).await.unwrap(), hello());
        assert_eq!(reader.discarded_bytes(), 26);
        assert_eq!(reader.read::<ServerMessage, _>(&mut stream).await.unwrap(), ServerMessage::HelloRequest);
        assert!(matches!(reader.read::<AgentMessage, _>(&mut stream).await, Err(FrameError::Closed)));
    }

    #[tokio::test]
    async fn garbage_between_frames_is_out_of_sync_and_reading_recovers_at_the_next_marker() {
        let mut input = encode_synced_frame(&hello()).unwrap();
        input.extend_from_slice(b"garbage");
        input.extend(encode_synced_frame(&hello()).unwrap());
        let mut reader = SyncedFrameReader::new(MAX_FRAME_BYTES);
        let mut stream = input.as_slice();
        assert_eq!(reader.read::<AgentMessage, _>(&mut stream).await.unwrap(), hello());
        let error = reader.read::<AgentMessage, _>(&mut stream).await.unwrap_err();
        assert!(matches!(error, FrameError::OutOfSync { found } if &found == b"garb"), "{error:?}");
        assert_eq!(reader.read::<AgentMessage, _>(&mut stream).await.unwrap(), hello());
    }

    #[tokio::test]
    async fn a_frame_cut_short_by_a_new_marker_is_out_of_sync() {
        let whole = encode_synced_frame(&hello()).unwrap();
        let mut input = whole[..whole.len() - 5].to_vec();
        input.extend(encode_synced_frame(&ServerMessage::HelloRequest).unwrap());
        let mut reader = SyncedFrameReader::new(MAX_FRAME_BYTES);
        let mut stream = input.as_slice();
        let error = reader.read::<AgentMessage, _>(&mut stream).await.unwrap_err();
        assert!(matches!(error, FrameError::OutOfSync { .. }), "{error:?}");
        assert_eq!(reader.read::<ServerMessage, _>(&mut stream).await.unwrap(), ServerMessage::HelloRequest);
    }

    #[tokio::test]
    async fn oversized_and_malformed_frames_are_refused() {
        let mut input = SYNC_MARKER.to_vec();
        input.extend_from_slice(&2000u32.to_be_bytes());
        let mut reader = SyncedFrameReader::new(1000);
        let error = reader.read::<AgentMessage, _>(&mut input.as_slice()).await.unwrap_err();
        assert!(matches!(error, FrameError::TooLarge { length: 2000, limit: 1000 }), "{error:?}");

        let mut input = SYNC_MARKER.to_vec();
        input.extend_from_slice(&8u32.to_be_bytes());
        input.extend_from_slice(b"not json");
        let mut reader = SyncedFrameReader::new(1000);
        let error = reader.read::<AgentMessage, _>(&mut input.as_slice()).await.unwrap_err();
        assert!(matches!(error, FrameError::Malformed(_)), "{error:?}");
    }

    #[tokio::test]
    async fn frames_arriving_a_byte_at_a_time_survive_cancelled_reads() {
        let frame = encode_synced_frame(&hello()).unwrap();
        let (mut client, mut server) = tokio::io::duplex(64);
        let mut reader = SyncedFrameReader::new(MAX_FRAME_BYTES);
        for byte in &frame {
            client.write_all(&[*byte]).await.unwrap();
            // A read that has not finished by now is dropped, as a `select!` would drop it.
            let attempt =
                tokio::time::timeout(std::time::Duration::from_millis(1), reader.read::<AgentMessage, _>(&mut server));
            if let Ok(result) = attempt.await {
                assert_eq!(result.unwrap(), hello());
                return;
            }
        }
        panic!("the frame was never decoded");
    }

    #[test]
    fn the_marker_never_occurs_in_an_encoded_frame() {
        let message = AgentMessage::Hello {
            protocol_version: u32::MAX,
            agent_version: "\u{ff}\u{ffff}ÿÿÿÿ".into(),
            inventory_digest: Some("x".repeat(65535)),
        };
        let frame = encode_synced_frame(&message).unwrap();
        assert_eq!(find_marker(&frame), Some(0));
        assert_eq!(find_marker(&frame[1..]), None);
    }
}
