//! An SMTP relay over lettre's SMTP client, with `none`, `starttls` or `tls`, and a pool of
//! `pool_size` connections kept open between mails.
//!
//! The pool is ours, not lettre's, for one reason: lettre opens its sockets with Nagle's
//! algorithm on, and it writes a message's body and its final `.` in two writes, so every mail
//! waited for the relay's delayed ACK (40 ms on Linux): 25 mails/s per connection, whatever the
//! relay. Our connections set `TCP_NODELAY` and are handed to lettre
//! (`AsyncSmtpConnection::connect_with_transport`), which still speaks the protocol, TLS and
//! login. At most `pool_size` connections exist: a send beyond that waits for one.
//!
//! Which failures are final: only the relay's permanent answer to one mail (a 5xx for its
//! recipient or content). A refused login (535), a relay that cannot be reached or does not
//! answer are our side's or the relay's fault, not the recipient's: the mail waits and is
//! retried, and the failure is counted per origin.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use authd_settings::{SmtpSettings, SmtpTls};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

use super::sendmail::envelope;
use super::{BackendError, Delivered, FailureReason, MailBackend, Outgoing, SendError};

/// A pooled connection unused this long is closed rather than reused (relays drop idle
/// clients after a few minutes; lettre's pool used the same 60 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

enum Security {
    None,
    Starttls(TlsParameters),
    /// Implicit TLS (port 465): TLS before the greeting.
    Tls(TlsParameters),
}

pub struct SmtpBackend {
    host: String,
    port: u16,
    security: Security,
    timeout: Duration,
    credentials: Option<Credentials>,
    hello: ClientId,
    /// Connections between sends, most recently used last.
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    /// One permit per connection that may exist.
    slots: Semaphore,
}

impl std::fmt::Debug for SmtpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpBackend")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "tls",
                &match self.security {
                    Security::None => "none",
                    Security::Starttls(_) => "starttls",
                    Security::Tls(_) => "tls",
                },
            )
            .finish_non_exhaustive()
    }
}

impl SmtpBackend {
    pub fn new(s: &SmtpSettings) -> Result<Self, BackendError> {
        let params = || TlsParameters::new(s.host.clone()).map_err(|e| BackendError(e.to_string()));
        let security = match s.tls {
            SmtpTls::None => Security::None,
            SmtpTls::Starttls => Security::Starttls(params()?),
            SmtpTls::Tls => Security::Tls(params()?),
        };
        let credentials = (!s.username.is_empty())
            .then(|| Credentials::new(s.username.clone(), s.password.expose_secret().to_owned()));
        let size = usize::try_from(s.pool_size.max(1)).unwrap_or(1);
        Ok(Self {
            host: s.host.clone(),
            port: s.port,
            security,
            timeout: Duration::from_secs(s.timeout_secs),
            credentials,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::with_capacity(size)),
            slots: Semaphore::new(size),
        })
    }

    /// A new connection: TCP (no Nagle), TLS as configured, greeting and EHLO, login.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let connect_failed = |e: io::Error| {
            SendError::transient(
                FailureReason::Connect,
                format!("smtp: connection error: {e}"),
            )
        };
        let tcp = tokio::time::timeout(
            self.timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| SendError::transient(FailureReason::Timeout, "smtp: connection timed out"))?
        .map_err(connect_failed)?;
        tcp.set_nodelay(true).map_err(connect_failed)?;
        let smtp_error = |e: lettre::transport::smtp::Error| send_error(&e);
        let mut conn = match &self.security {
            Security::None | Security::Starttls(_) => {
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                    .await
                    .map_err(smtp_error)?
            }
            Security::Tls(params) => {
                #[expect(
                    deprecated,
                    reason = "lettre's only public way to run its TLS over a socket we opened"
                )]
                let mut stream =
                    lettre::transport::smtp::client::AsyncNetworkStream::use_existing_tokio1(
                        Box::new(tcp),
                    );
                stream
                    .upgrade_tls(params.clone())
                    .await
                    .map_err(smtp_error)?;
                AsyncSmtpConnection::connect_with_transport(
                    Box::new(Tls(stream.compat())),
                    &self.hello,
                )
                .await
                .map_err(smtp_error)?
            }
        };
        if let Security::Starttls(params) = &self.security {
            conn.starttls(params.clone(), &self.hello)
                .await
                .map_err(smtp_error)?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials)
                .await
                .map_err(smtp_error)?;
        }
        Ok(conn)
    }

    /// A pooled connection that still answers, or a new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, SendError> {
        loop {
            let parked = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            let Some((mut conn, since)) = parked else {
                return self.connect().await;
            };
            if since.elapsed() < IDLE_TIMEOUT && conn.test_connected().await {
                return Ok(conn);
            }
            conn.abort().await;
        }
    }

    fn park(&self, conn: AsyncSmtpConnection) {
        if conn.has_broken() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push((conn, Instant::now()));
        }
    }
}

/// lettre's TLS stream, made a Tokio stream again so that lettre's client can run over it.
#[expect(deprecated, reason = "see SmtpBackend::connect")]
struct Tls(Compat<lettre::transport::smtp::client::AsyncNetworkStream>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl AsyncTokioStream for Tls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().peer_addr()
    }
}

impl AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Reply codes that mean "your login failed" (RFC 4954): 530 authentication required, 534
/// mechanism too weak, 535 credentials invalid, 538 encryption required, 454 temporary
/// authentication failure.
const AUTH_CODES: &[u16] = &[454, 530, 534, 535, 538];

/// Sorts a failed send: its reason, and whether it is final for this mail.
fn classify(code: Option<u16>, timed_out: bool, auth_client_error: bool) -> (FailureReason, bool) {
    match code {
        _ if timed_out => (FailureReason::Timeout, false),
        Some(c) if AUTH_CODES.contains(&c) => (FailureReason::Auth, false),
        // "Service not available, closing transmission channel".
        Some(421) => (FailureReason::Connect, false),
        Some(c) if (500..600).contains(&c) => (FailureReason::Rejected, true),
        Some(_) => (FailureReason::Deferred, false),
        None if auth_client_error => (FailureReason::Auth, false),
        None => (FailureReason::Connect, false),
    }
}

fn send_error(e: &lettre::transport::smtp::Error) -> SendError {
    let text = format!("smtp: {e}");
    let auth_client_error = e.is_client() && text.to_ascii_lowercase().contains("authentication");
    let (reason, permanent) =
        classify(e.status().map(u16::from), e.is_timeout(), auth_client_error);
    if permanent {
        SendError::permanent(reason, text)
    } else {
        SendError::transient(reason, text)
    }
}

impl MailBackend for SmtpBackend {
    fn name(&self) -> &'static str {
        "smtp"
    }

    fn send<'a>(&'a self, mail: &'a Outgoing) -> BoxFuture<'a, Result<Delivered, SendError>> {
        async move {
            let env = envelope(mail)?;
            let _slot = self.slots.acquire().await.map_err(|_| {
                SendError::transient(FailureReason::Connect, "smtp: the backend is shutting down")
            })?;
            let mut conn = self.checkout().await?;
            // On an error lettre has already closed the connection; park() drops it.
            let sent = conn.send(&env, mail.envelope.message.as_bytes()).await;
            self.park(conn);
            let response = sent.map_err(|e| send_error(&e))?;
            let text: Vec<&str> = response.message().collect();
            Ok(Delivered {
                detail: format!("{} {}", response.code(), text.join(" ")),
            })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::*;

    #[test]
    fn only_a_permanent_answer_to_the_mail_is_final() {
        use FailureReason::*;
        assert_eq!(classify(Some(550), false, false), (Rejected, true));
        assert_eq!(classify(Some(553), false, false), (Rejected, true));
        assert_eq!(classify(Some(552), false, false), (Rejected, true));
        for code in [535, 530, 534, 538, 454] {
            assert_eq!(classify(Some(code), false, false), (Auth, false), "{code}");
        }
        assert_eq!(classify(Some(421), false, false), (Connect, false));
        assert_eq!(classify(Some(451), false, false), (Deferred, false));
        assert_eq!(classify(None, false, false), (Connect, false));
        assert_eq!(classify(None, true, false), (Timeout, false));
        assert_eq!(classify(None, false, true), (Auth, false));
    }

    /// A minimal SMTP server that accepts everything, takes `hold` over each message, and
    /// counts its connections: (open now, most open at once, opened in all).
    async fn relay(hold: Duration) -> (u16, Arc<[AtomicUsize; 3]>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let c = counts.clone();
        tokio::spawn(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                let c = c.clone();
                let open = c[0].fetch_add(1, Ordering::SeqCst) + 1;
                c[1].fetch_max(open, Ordering::SeqCst);
                c[2].fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (read, mut write) = sock.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 relay\r\n").await.unwrap();
                    let mut data = false;
                    while let Ok(Some(line)) = lines.next_line().await {
                        let answer: &[u8] = if data {
                            if line != "." {
                                continue;
                            }
                            data = false;
                            tokio::time::sleep(hold).await;
                            b"250 queued\r\n"
                        } else if line.starts_with("EHLO") {
                            b"250-relay\r\n250 8BITMIME\r\n"
                        } else if line == "DATA" {
                            data = true;
                            b"354 go on\r\n"
                        } else if line == "QUIT" {
                            b"221 bye\r\n"
                        } else {
                            b"250 ok\r\n"
                        };
                        if write.write_all(answer).await.is_err() {
                            break;
                        }
                    }
                    c[0].fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (port, counts)
    }

    fn mail(id: i64) -> Outgoing {
        Outgoing {
            id,
            created_at_ms: 0,
            envelope: crate::seal::Envelope {
                from: "a@example.org".into(),
                to: vec!["b@example.org".into()],
                message: "Subject: hi\r\n\r\nhello\r\n".into(),
            },
        }
    }

    #[tokio::test]
    async fn at_most_pool_size_connections_are_open_and_they_are_reused() {
        let (port, counts) = relay(Duration::from_millis(20)).await;
        let backend = SmtpBackend::new(&SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            tls: SmtpTls::None,
            username: String::new(),
            password: secrecy::SecretString::from(String::new()),
            password_file: String::new(),
            timeout_secs: 10,
            pool_size: 2,
        })
        .unwrap();
        let mails: Vec<Outgoing> = (0..12).map(mail).collect();
        let sent = futures_util::future::join_all(mails.iter().map(|m| backend.send(m))).await;
        assert!(sent.iter().all(Result::is_ok), "{sent:?}");
        // Twelve mails at once through two connections, opened once each.
        assert_eq!(counts[1].load(Ordering::SeqCst), 2, "most open at once");
        assert_eq!(counts[2].load(Ordering::SeqCst), 2, "opened in all");
        // A later mail reuses a parked connection.
        backend.send(&mail(12)).await.unwrap();
        assert_eq!(counts[2].load(Ordering::SeqCst), 2, "opened in all");
    }
}
