//! A small SMTP client (RFC 5321) for the e-mail action: EHLO, STARTTLS (RFC 3207, tokio-rustls), AUTH PLAIN or
//! LOGIN (RFC 4954), MAIL FROM, RCPT TO, DATA with dot-stuffing, QUIT. Every step has a timeout; every failure
//! names the server, the command and, when the server refused, its reply. Replies are read with a bound on line
//! length and line count, so a hostile server cannot make the client allocate without limit.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use steward_types::api::event_actions::SmtpTls;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long one step (connecting, one command and its reply, the TLS handshake) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest reply line and the most lines of one reply read.
const MAX_REPLY_LINE: u64 = 2048;
const MAX_REPLY_LINES: usize = 100;
/// Body lines are cut to this many bytes (RFC 5321 allows 998 plus CRLF).
const MAX_BODY_LINE: usize = 990;

/// Where and how to send.
pub struct SmtpSettings<'a> {
    /// `host:port`.
    pub server: &'a str,
    pub tls: SmtpTls,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    /// A PEM certificate authority to trust besides the system's.
    pub ca_certificate: Option<&'a str>,
    pub from: &'a str,
    pub to: &'a [String],
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("cannot connect to the SMTP server {server}")]
    Connect {
        server: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the SMTP server {server} did not answer in time ({stage})")]
    Timeout { server: String, stage: String },
    #[error("the connection to the SMTP server {server} failed ({stage})")]
    Io {
        server: String,
        stage: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the SMTP server {server} refused {command}: {code} {text}")]
    Refused { server: String, command: String, code: u16, text: String },
    #[error("the SMTP server {server} does not offer STARTTLS, and the action requires TLS")]
    TlsUnavailable { server: String },
    #[error("TLS with the SMTP server {server} failed: {reason}")]
    Tls { server: String, reason: String },
    #[error(
        "the SMTP server {server} offered no STARTTLS: the credentials are not sent in clear (set tls: none to allow it)"
    )]
    CleartextCredentials { server: String },
    #[error("the SMTP server {server} offers no authentication Steward speaks (PLAIN, LOGIN); it offers: {offered}")]
    NoAuthMechanism { server: String, offered: String },
    #[error("the SMTP server {server} broke the protocol: {reason}")]
    Protocol { server: String, reason: String },
}

impl SmtpError {
    /// A refusal with a 5xx code, or a server that lacks what the action needs, will not change by itself.
    pub fn is_permanent(&self) -> bool {
        match self {
            SmtpError::Refused { code, .. } => *code >= 500,
            SmtpError::TlsUnavailable { .. }
            | SmtpError::CleartextCredentials { .. }
            | SmtpError::NoAuthMechanism { .. } => true,
            _ => false,
        }
    }
}

/// Splits `host:port` (`[v6]:port` for IPv6); the error says what is wrong.
pub fn parse_server(text: &str) -> Result<(String, u16), String> {
    let error = || format!("{text:?} is not host:port (for example mail.example.com:587)");
    let (host, port) = text.rsplit_once(':').ok_or_else(error)?;
    let host = host.strip_prefix('[').and_then(|inner| inner.strip_suffix(']')).unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| error())?;
    if host.is_empty() || port == 0 || host.contains(char::is_whitespace) {
        return Err(error());
    }
    if host.parse::<std::net::IpAddr>().is_err() {
        steward_types::validate::hostname("server", host).map_err(|_| error())?;
    }
    Ok((host.to_owned(), port))
}

/// Whether an address is a plain `local@domain` one (no display name, no spaces, no angle brackets).
pub fn check_address(address: &str) -> Result<(), String> {
    let error = || format!("{address:?} is not an e-mail address like ops@example.com");
    let (local, domain) = address.rsplit_once('@').ok_or_else(error)?;
    let forbidden = |c: char| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '(' | ')' | ',' | ';');
    if local.is_empty() || domain.is_empty() || address.len() > 254 || address.chars().any(forbidden) {
        return Err(error());
    }
    if domain.parse::<std::net::IpAddr>().is_err() && !domain.contains('.') && domain != "localhost" {
        return Err(error());
    }
    Ok(())
}

/// A header value on one line, encoded (RFC 2047) when it is not ASCII.
fn header_value(text: &str) -> String {
    let line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if line.is_ascii() {
        line
    } else {
        format!("=?utf-8?b?{}?=", base64::engine::general_purpose::STANDARD.encode(line.as_bytes()))
    }
}

/// The whole message (RFC 5322, CRLF line ends), not yet dot-stuffed.
pub fn compose(settings: &SmtpSettings<'_>, subject: &str, body: &str, message_id: &str) -> String {
    let date = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let date = jiff::fmt::rfc2822::to_string(&date).unwrap_or_default();
    let mut message = format!(
        "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: {date}\r\nMessage-ID: <{message_id}@steward>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        settings.from,
        settings.to.join(", "),
        header_value(subject),
    );
    for line in body.lines() {
        let mut rest = line;
        loop {
            let mut cut = rest.len().min(MAX_BODY_LINE);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            message.push_str(&rest[..cut]);
            message.push_str("\r\n");
            rest = &rest[cut..];
            if rest.is_empty() {
                break;
            }
        }
    }
    message
}

/// Dot-stuffing (RFC 5321 4.5.2): a line starting with `.` gets another, and the data ends with `CRLF.CRLF`.
pub fn dot_stuff(message: &str) -> String {
    let mut data = String::with_capacity(message.len() + 8);
    for line in message.split_inclusive("\r\n") {
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(line);
    }
    if !data.ends_with("\r\n") {
        data.push_str("\r\n");
    }
    data.push_str(".\r\n");
    data
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        self.lines.join(" / ")
    }
}

struct Session<'a> {
    server: &'a str,
    stream: BufReader<Box<dyn Io>>,
}

/// Runs one step of the conversation with its timeout.
async fn step<T>(
    server: &str,
    stage: &str,
    work: impl std::future::Future<Output = Result<T, SmtpError>>,
) -> Result<T, SmtpError> {
    tokio::time::timeout(STEP_TIMEOUT, work)
        .await
        .map_err(|_| SmtpError::Timeout { server: server.to_owned(), stage: stage.to_owned() })?
}

fn io_error(server: &str, stage: &str) -> impl FnOnce(std::io::Error) -> SmtpError {
    let (server, stage) = (server.to_owned(), stage.to_owned());
    move |source| SmtpError::Io { server, stage, source }
}

impl Session<'_> {
    async fn read_reply(&mut self, stage: &str) -> Result<Reply, SmtpError> {
        let server = self.server.to_owned();
        let protocol = |reason: String| SmtpError::Protocol { server: server.clone(), reason };
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            (&mut self.stream)
                .take(MAX_REPLY_LINE)
                .read_until(b'\n', &mut line)
                .await
                .map_err(io_error(self.server, stage))?;
            if line.is_empty() {
                return Err(protocol(format!("the server closed the connection ({stage})")));
            }
            if !line.ends_with(b"\n") {
                return Err(protocol(format!("a reply line longer than {MAX_REPLY_LINE} bytes ({stage})")));
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            let code = text.get(..3).and_then(|code| code.parse::<u16>().ok());
            let Some(code) = code.filter(|code| (200..600).contains(code)) else {
                return Err(protocol(format!("{text:?} is not an SMTP reply ({stage})")));
            };
            let last = text.as_bytes().get(3) != Some(&b'-');
            lines.push(text.get(4..).unwrap_or("").to_owned());
            if last {
                return Ok(Reply { code, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(protocol(format!("a reply of more than {MAX_REPLY_LINES} lines ({stage})")));
            }
        }
    }

    /// Sends one command line (shown as `shown` in errors, so credentials never are) and reads its reply, which
    /// must have one of the `expected` codes.
    async fn command(&mut self, line: &str, shown: &str, expected: &[u16]) -> Result<Reply, SmtpError> {
        let server = self.server;
        let reply = step(server, shown, async {
            self.stream.write_all(format!("{line}\r\n").as_bytes()).await.map_err(io_error(server, shown))?;
            self.stream.flush().await.map_err(io_error(server, shown))?;
            self.read_reply(shown).await
        })
        .await?;
        if expected.contains(&reply.code) {
            Ok(reply)
        } else {
            Err(SmtpError::Refused {
                server: self.server.to_owned(),
                command: shown.to_owned(),
                code: reply.code,
                text: reply.text(),
            })
        }
    }

    async fn ehlo(&mut self, name: &str) -> Result<Vec<String>, SmtpError> {
        let reply = self.command(&format!("EHLO {name}"), "EHLO", &[250]).await?;
        Ok(reply.lines.iter().skip(1).map(|line| line.to_ascii_uppercase()).collect())
    }
}

fn tls_config(server: &str, ca_certificate: Option<&str>) -> Result<Arc<rustls::ClientConfig>, SmtpError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let tls_error = |reason: String| SmtpError::Tls { server: server.to_owned(), reason };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(certificate);
    }
    if let Some(pem) = ca_certificate {
        for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let certificate =
                certificate.map_err(|error| tls_error(format!("the action's CA certificate: {error}")))?;
            roots.add(certificate).map_err(|error| tls_error(format!("the action's CA certificate: {error}")))?;
        }
    }
    Ok(Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth()))
}

/// Sends `message` (from [`compose`]) to every recipient.
pub async fn send(settings: &SmtpSettings<'_>, message: &str) -> Result<(), SmtpError> {
    let server = settings.server;
    let (host, port) =
        parse_server(server).map_err(|reason| SmtpError::Protocol { server: server.to_owned(), reason })?;
    let tcp = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| SmtpError::Timeout { server: server.to_owned(), stage: "connect".to_owned() })?
        .map_err(|source| SmtpError::Connect { server: server.to_owned(), source })?;
    let name = match tcp.local_addr() {
        Ok(std::net::SocketAddr::V4(address)) => format!("[{}]", address.ip()),
        Ok(std::net::SocketAddr::V6(address)) => format!("[IPv6:{}]", address.ip()),
        Err(_) => "steward".to_owned(),
    };
    let mut session = Session { server, stream: BufReader::new(Box::new(tcp)) };
    let greeting = step(server, "greeting", session.read_reply("greeting")).await?;
    let greeting_code = greeting.code;
    if greeting_code != 220 {
        return Err(SmtpError::Refused {
            server: server.to_owned(),
            command: "the connection".to_owned(),
            code: greeting_code,
            text: greeting.text(),
        });
    }
    let mut extensions = session.ehlo(&name).await?;
    let offers = |extensions: &[String], keyword: &str| {
        extensions.iter().any(|line| line.split_whitespace().next() == Some(keyword))
    };
    let starttls = match settings.tls {
        SmtpTls::Required if !offers(&extensions, "STARTTLS") => {
            return Err(SmtpError::TlsUnavailable { server: server.to_owned() });
        }
        SmtpTls::Required => true,
        SmtpTls::Opportunistic => offers(&extensions, "STARTTLS"),
        SmtpTls::None => false,
    };
    if starttls {
        session.command("STARTTLS", "STARTTLS", &[220]).await?;
        if !session.stream.buffer().is_empty() {
            return Err(SmtpError::Protocol {
                server: server.to_owned(),
                reason: "data arrived before the TLS handshake (a STARTTLS injection?)".to_owned(),
            });
        }
        let config = tls_config(server, settings.ca_certificate)?;
        let server_name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|error| SmtpError::Tls { server: server.to_owned(), reason: error.to_string() })?;
        let plain =
            std::mem::replace(&mut session.stream, BufReader::new(Box::new(tokio::io::duplex(1).0))).into_inner();
        let tls =
            tokio::time::timeout(STEP_TIMEOUT, tokio_rustls::TlsConnector::from(config).connect(server_name, plain))
                .await
                .map_err(|_| SmtpError::Timeout { server: server.to_owned(), stage: "TLS handshake".to_owned() })?
                .map_err(|error| SmtpError::Tls { server: server.to_owned(), reason: error.to_string() })?;
        session.stream = BufReader::new(Box::new(tls));
        extensions = session.ehlo(&name).await?;
    }
    if let Some(username) = settings.username {
        if !starttls && settings.tls != SmtpTls::None {
            return Err(SmtpError::CleartextCredentials { server: server.to_owned() });
        }
        let password = settings.password.unwrap_or("");
        let mechanisms: Vec<String> = extensions
            .iter()
            .filter_map(|line| line.strip_prefix("AUTH"))
            .flat_map(|rest| rest.split([' ', '=']).map(str::to_owned))
            .filter(|mechanism| !mechanism.is_empty())
            .collect();
        let encode = |text: &[u8]| base64::engine::general_purpose::STANDARD.encode(text);
        if mechanisms.iter().any(|mechanism| mechanism == "PLAIN") {
            let token = encode(format!("\0{username}\0{password}").as_bytes());
            session.command(&format!("AUTH PLAIN {token}"), "AUTH PLAIN", &[235]).await?;
        } else if mechanisms.iter().any(|mechanism| mechanism == "LOGIN") {
            session.command("AUTH LOGIN", "AUTH LOGIN", &[334]).await?;
            session.command(&encode(username.as_bytes()), "AUTH LOGIN (user name)", &[334]).await?;
            session.command(&encode(password.as_bytes()), "AUTH LOGIN (password)", &[235]).await?;
        } else {
            return Err(SmtpError::NoAuthMechanism {
                server: server.to_owned(),
                offered: if mechanisms.is_empty() { "none".to_owned() } else { mechanisms.join(" ") },
            });
        }
    }
    let body_parameter = if offers(&extensions, "8BITMIME") { " BODY=8BITMIME" } else { "" };
    let from = format!("MAIL FROM:<{}>", settings.from);
    session.command(&format!("{from}{body_parameter}"), &from, &[250]).await?;
    for recipient in settings.to {
        let command = format!("RCPT TO:<{recipient}>");
        session.command(&command, &command, &[250, 251]).await?;
    }
    session.command("DATA", "DATA", &[354]).await?;
    let data = dot_stuff(message);
    step(server, "the message", async {
        session.stream.write_all(data.as_bytes()).await.map_err(io_error(server, "the message"))?;
        session.stream.flush().await.map_err(io_error(server, "the message"))
    })
    .await?;
    let accepted = step(server, "the message", session.read_reply("the message")).await?;
    if accepted.code != 250 {
        return Err(SmtpError::Refused {
            server: server.to_owned(),
            command: "the message".to_owned(),
            code: accepted.code,
            text: accepted.text(),
        });
    }
    // The message is accepted; a failed goodbye changes nothing.
    let _ = session.command("QUIT", "QUIT", &[221]).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_and_addresses_are_checked() {
        assert_eq!(parse_server("mail.example.com:587"), Ok(("mail.example.com".to_owned(), 587)));
        assert_eq!(parse_server("127.0.0.1:2525"), Ok(("127.0.0.1".to_owned(), 2525)));
        assert_eq!(parse_server("[::1]:25"), Ok(("::1".to_owned(), 25)));
        for bad in ["mail.example.com", "mail.example.com:0", ":25", "mail example:25", "host:99999"] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
        assert!(check_address("ops@example.com").is_ok());
        assert!(check_address("root@localhost").is_ok());
        for bad in ["ops", "@example.com", "ops@", "Ops <ops@example.com>", "a b@example.com", "x@nodot"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lines_starting_with_a_dot_are_stuffed() {
        assert_eq!(dot_stuff("a\r\n.b\r\n..c\r\n"), "a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(dot_stuff("no end"), "no end\r\n.\r\n");
        assert_eq!(dot_stuff(".\r\n"), "..\r\n.\r\n", "a lone dot never ends the data early");
    }

    #[test]
    fn composed_messages_have_crlf_short_lines_and_encoded_subjects() {
        let to = vec!["a@example.com".to_owned(), "b@example.com".to_owned()];
        let settings = SmtpSettings {
            server: "mail.example.com:25",
            tls: SmtpTls::None,
            username: None,
            password: None,
            ca_certificate: None,
            from: "steward@example.com",
            to: &to,
        };
        let long = "x".repeat(2500);
        let message = compose(&settings, "Größe\r\nBcc: evil@example.com", &format!("first\n{long}\n"), "id");
        assert!(message.contains("To: a@example.com, b@example.com\r\n"));
        assert!(message.contains("Subject: =?utf-8?b?"), "{message}");
        assert!(!message.contains("\r\nBcc:"), "no header injection through the subject");
        assert!(message.lines().all(|line| line.len() <= 998));
        assert!(message.split("\r\n").all(|line| !line.contains('\n')), "every line ends with CRLF");
    }
}
