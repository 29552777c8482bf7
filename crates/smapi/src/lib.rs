//! The z/VM Systems Management API (SMAPI), spoken over TCP to the request server (VSMREQIN, port 44444 by
//! default), optionally inside TLS.
//!
//! Layers, bottom up:
//! - [`text`] and [`wire`]: ISO-8859-15 text and the parameter kinds (int1/int4/int8, length-prefixed and
//!   fixed strings, record arrays, framed and unframed keyword lists) with a bounded reader for replies.
//! - [`request`] and [`response`]: the request frame (input length, function name, user ID, password, target,
//!   parameters) and the reply frame (request id, output length, request id, return code, reason code, output),
//!   with [`response::interpret`] turning a reply into an [`Outcome`] or a [`CallError`].
//! - [`layout`]: function outputs described as data ([`layout::Layout`]) and decoded by one interpreter.
//! - [`codes`]: what each return and reason code means (IBM's wording, in our words) and an [`ErrorKind`].
//! - [`functions`]: one typed request per SMAPI function, which encodes itself and decodes its typed output.
//! - [`server`]: the other side, for responders and simulators: reading a request's parameters and writing a
//!   reply's output.
//! - [`client`]: [`SmapiClient`], one request per connection as SMAPI wants, with bounded concurrency,
//!   timeouts, connect retries, `Response_Recovery` of lost replies and polling of asynchronous (RC 592)
//!   DirMaint operations.
//!
//! **Architecture invariant:** no dependency on other Steward crates; this crate knows SMAPI, not Steward.
//!
//! ```
//! use smapi::functions::ImageStatusQuery;
//! use smapi::{Credentials, Outcome, Reply, encode_request, interpret};
//!
//! let request = ImageStatusQuery::new("LINUX01");
//! let credentials = Credentials::new("MAINT", "secret").expect("valid credentials");
//! let frame = encode_request(&request, &credentials).expect("encodable");
//! assert_eq!(&frame[4..26], b"\x00\x00\x00\x12Image_Status_Query");
//!
//! // The server answers: request id 7, return code 0, reason code 0, one active guest.
//! let reply = Reply::parse(b"\0\0\0\x07\0\0\0\x1b\0\0\0\x07\0\0\0\0\0\0\0\0\0\0\0\x0b\0\0\0\x07LINUX01")
//!     .expect("well-formed reply");
//! let Outcome::Completed { output, .. } = interpret(&request, &reply).expect("success") else { panic!() };
//! assert_eq!(output.active_images, ["LINUX01"]);
//! ```

pub mod client;
pub mod codes;
pub mod error;
pub mod functions;
pub mod layout;
pub mod request;
pub mod response;
pub mod server;
pub mod text;
pub mod wire;

pub use client::{ClientConfig, SmapiClient, TcpTransport, TlsSettings, Transport};
pub use codes::ErrorKind;
pub use error::{CallError, DecodeError, EncodeError, Error};
pub use request::{CallDuration, Credentials, RequestFrame, SmapiRequest, encode_request};
pub use response::{AsynchronousOperation, Outcome, Reply, interpret};
