//! Real mail infrastructure for the tests, as separate processes: an SMTP server (Debian's
//! `python3-aiosmtpd`) that keeps every message it receives, a sendmail-compatible program
//! (`msmtp`) relaying to it, and the real `authd` binary as a process of its own.
//!
//! Nothing here is skipped when a tool is missing: the test fails and says what to install.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Reply;

/// The interpreter Debian's `python3-aiosmtpd` is installed for (`python3` on PATH may be
/// another one).
pub const PYTHON: &str = "/usr/bin/python3";
/// Debian's `msmtp`.
pub const MSMTP: &str = "/usr/bin/msmtp";

/// The OTP key every process of a test shares (processes on one database must agree on it).
pub const TEST_OTP_KEY: &str = "test-otp-key-0123456789abcdef0123456789";

/// Fails the test, naming the package to install, unless aiosmtpd can be imported.
pub fn require_aiosmtpd() {
    let ok = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd.handlers, aiosmtpd.main"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "these tests need a real SMTP server: `{PYTHON} -c 'import aiosmtpd'` failed; \
         install it with `apt-get install python3-aiosmtpd` (.ci/run installs it in CI)"
    );
}

/// Fails the test, naming the package to install, unless msmtp is there.
pub fn require_msmtp() {
    let ok = Command::new(MSMTP)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "these tests need a sendmail-compatible program: `{MSMTP} --version` failed; \
         install it with `apt-get install msmtp` (.ci/run installs it in CI)"
    );
}

/// A port that was free a moment ago, chosen at random below the kernel's ephemeral range
/// (32768 and up on Linux), so that neither outgoing connections nor other `:0` listeners of
/// parallel tests are handed it while our server is stopped for a restart.
fn free_port() -> u16 {
    let seed = uuid::Uuid::new_v4().as_u128();
    for i in 0..200u128 {
        let port = 20_000 + u16::try_from((seed.wrapping_add(i * 7919)) % 12_000).unwrap_or(0);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port found between 20000 and 32000 on 127.0.0.1");
}

/// Whether an SMTP server answers on `port` with its `220` greeting.
fn greets(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(1000)));
    let mut buf = [0u8; 3];
    let greeted = stream.read_exact(&mut buf).is_ok() && &buf == b"220";
    if greeted {
        let _ = stream.write_all(b"QUIT\r\n");
    }
    greeted
}

/// How a test relay behaves, beyond storing what it accepts.
#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    /// Milliseconds the server takes to answer each message (a slow relay); 0 for none.
    pub slow_ms: u64,
    /// Store the message before that wait rather than after it: the mail has arrived, its
    /// `250` has not (a sender that dies now has delivered without knowing it).
    pub store_first: bool,
    /// Require AUTH (PLAIN or LOGIN, over plain text) with this username and password: until
    /// a client logs in, `MAIL` gets `530`; wrong credentials get `535`.
    pub auth: Option<(String, String)>,
    /// Answer `RCPT TO` for this address with `550 5.1.1 <address>: Recipient address
    /// rejected` (a mailbox that does not exist).
    pub reject_rcpt: Option<String>,
}

/// The relay behind [`SmtpOptions`] (aiosmtpd's `SMTP` with a `Mailbox` handler), for the
/// options `python3 -m aiosmtpd` has no flag for. It logs the whole SMTP dialogue (aiosmtpd
/// masks AUTH payloads itself) and one `relay: AUTH ...` line per login attempt.
const RELAY_PY: &str = r#"import asyncio
import errno
import logging
import sys

from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

port, maildir, delay_ms, store_first, user, password, reject_rcpt = sys.argv[1:8]
delay = int(delay_ms) / 1000.0
store_first = store_first == "1"
logging.basicConfig(level=logging.DEBUG, format="%(name)s %(message)s", stream=sys.stdout)


class Relay(Mailbox):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if reject_rcpt and address == reject_rcpt:
            return f"550 5.1.1 <{address}>: Recipient address rejected"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if store_first:
            answer = await super().handle_DATA(server, session, envelope)
            await asyncio.sleep(delay)
            return answer
        await asyncio.sleep(delay)
        return await super().handle_DATA(server, session, envelope)


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?"
    print(f"relay: AUTH {mechanism} user={login} {'accepted' if ok else 'refused'}", flush=True)
    # handled=False: aiosmtpd answers the refusal with 535 itself.
    return AuthResult(success=ok, handled=False)


def factory():
    if user:
        return SMTP(Relay(maildir), hostname="relay.test", auth_required=True,
                    auth_require_tls=False, authenticator=authenticator)
    return SMTP(Relay(maildir), hostname="relay.test")


async def main():
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(factory, host="127.0.0.1", port=int(port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            print("Address already in use", flush=True)
        raise
    print(f"relay: listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
"#;

/// A real SMTP server (aiosmtpd with its `Mailbox` handler) on 127.0.0.1 that stores every
/// message it accepts in a maildir.
#[derive(Debug)]
pub struct SmtpServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    paused: bool,
    options: SmtpOptions,
}

impl SmtpServer {
    /// Starts the server on a free port and returns once it greets clients.
    pub fn start() -> Self {
        Self::start_slow(0)
    }

    /// Like [`SmtpServer::start`], for a relay that takes `ms` milliseconds to accept each
    /// message.
    pub fn start_slow(ms: u64) -> Self {
        Self::start_with(SmtpOptions {
            slow_ms: ms,
            ..SmtpOptions::default()
        })
    }

    /// A relay that accepts mail only after AUTH with `username` and `password`.
    pub fn start_with_auth(username: &str, password: &str) -> Self {
        Self::start_with(SmtpOptions {
            auth: Some((username.to_owned(), password.to_owned())),
            ..SmtpOptions::default()
        })
    }

    pub fn start_with(options: SmtpOptions) -> Self {
        require_aiosmtpd();
        let mut server = Self {
            port: 0,
            dir: tempfile::tempdir().expect("temp dir for the SMTP server"),
            child: None,
            paused: false,
            options,
        };
        // Another test may take the port between our check and the server's bind: then try
        // another one.
        let mut last_log = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(log) if log.contains("Address already in use") => last_log = log,
                Err(log) => panic!("the SMTP server did not start:\n{log}"),
            }
        }
        panic!("the SMTP server did not start after 5 ports:\n{last_log}")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("aiosmtpd.log")
    }

    fn maildir(&self) -> PathBuf {
        self.dir.path().join("maildir")
    }

    /// What the server printed (all its runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs the server on `self.port` and waits for its greeting; on failure, the log.
    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("SMTP server log file");
        let o = &self.options;
        if o.auth.is_some() || o.store_first || o.reject_rcpt.is_some() {
            let script = self.dir.path().join("relay.py");
            std::fs::write(&script, RELAY_PY).expect("relay script");
            let (user, password) = o.auth.clone().unwrap_or_default();
            let mut cmd = Command::new(PYTHON);
            cmd.arg(&script)
                .arg(self.port.to_string())
                .arg(self.maildir())
                .arg(o.slow_ms.to_string())
                .arg(if o.store_first { "1" } else { "0" })
                .arg(user)
                .arg(password)
                .arg(o.reject_rcpt.clone().unwrap_or_default())
                .env("PYTHONUNBUFFERED", "1");
            return self.run_and_wait(cmd, log);
        }
        let handler = if self.options.slow_ms > 0 {
            std::fs::write(
                self.dir.path().join("slow_relay.py"),
                format!(
                    "import asyncio\nfrom aiosmtpd.handlers import Mailbox\n\n\
                     class Slow(Mailbox):\n    async def handle_DATA(self, server, session, envelope):\n        \
                     await asyncio.sleep({})\n        return await super().handle_DATA(server, session, envelope)\n",
                    self.options.slow_ms as f64 / 1000.0
                ),
            )
            .expect("slow relay handler");
            "slow_relay.Slow"
        } else {
            "aiosmtpd.handlers.Mailbox"
        };
        let mut cmd = Command::new(PYTHON);
        cmd.args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", handler])
            .arg(self.maildir())
            .env("PYTHONPATH", self.dir.path());
        self.run_and_wait(cmd, log)
    }

    /// Starts the server command with its output in `log` and waits for its greeting.
    fn run_and_wait(&mut self, mut cmd: Command, log: std::fs::File) -> Result<(), String> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {PYTHON} -m aiosmtpd ({e}); install python3-aiosmtpd")
            });
        self.child = Some(child);
        self.paused = false;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "aiosmtpd on port {} exited with {status}:\n{}",
                    self.port,
                    self.log()
                ));
            }
            // Ours greets only if it is still alive: a server of a parallel test could hold
            // the port that ours failed to bind.
            if greets(self.port)
                && self
                    .child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill_child();
                return Err(format!(
                    "aiosmtpd did not greet on port {} within 20 s:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.paused {
                // A stopped process dies of SIGKILL too, but let it run its last instant.
                let _ = signal(child.id(), "CONT");
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server and waits until it is gone: clients now get "connection refused".
    pub fn stop(&mut self) {
        assert!(self.child.is_some(), "the SMTP server is not running");
        self.kill_child();
    }

    /// Changes the credentials the relay accepts from its next (re)start on.
    pub fn set_auth(&mut self, username: &str, password: &str) {
        assert!(self.child.is_none(), "stop the SMTP server first");
        self.options.auth = Some((username.to_owned(), password.to_owned()));
    }

    /// Starts the server again on the same port, keeping the messages received so far.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the SMTP server is still running");
        if let Err(log) = self.spawn() {
            panic!(
                "the SMTP server did not restart on port {}:\n{log}",
                self.port
            );
        }
    }

    /// Freezes the server (SIGSTOP): the kernel still accepts connections, but nobody greets
    /// them, so a client hangs until its own timeout — a server that has stopped answering.
    pub fn pause(&mut self) {
        let child = self.child.as_ref().expect("the SMTP server is not running");
        signal(child.id(), "STOP").expect("SIGSTOP to the SMTP server");
        self.paused = true;
    }

    /// Lets a paused server run again.
    pub fn resume(&mut self) {
        let child = self.child.as_ref().expect("the SMTP server is not running");
        signal(child.id(), "CONT").expect("SIGCONT to the SMTP server");
        self.paused = false;
    }

    /// Every message received so far, as raw RFC 5322 text (with the `X-Peer`, `X-MailFrom`
    /// and `X-RcptTo` headers the server adds), in the order the maildir names them.
    pub fn messages(&self) -> Vec<String> {
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.maildir().join(sub)) {
                files.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            }
        }
        files.sort();
        files
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    /// Polls until at least `n` messages have arrived and returns them all; fails the test
    /// when they have not within `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected {n} message(s) at the SMTP server on port {} within {timeout:?}, \
                     got {}:\n{}\n--- server log ---\n{}",
                    self.port,
                    messages.len(),
                    summary(&messages),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Async version of [`Self::wait_for`], for tests inside an actix/tokio runtime that must
    /// keep serving while they wait.
    pub async fn wait_for_async(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected {n} message(s) at the SMTP server on port {} within {timeout:?}, \
                     got {}:\n{}\n--- server log ---\n{}",
                    self.port,
                    messages.len(),
                    summary(&messages),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails the test if the number of messages differs from `n` at any look during `period`
    /// (a duplicate or an early delivery would show up here).
    pub fn assert_count_stays(&self, n: usize, period: Duration) {
        let until = Instant::now() + period;
        loop {
            let messages = self.messages();
            assert_eq!(
                messages.len(),
                n,
                "the SMTP server on port {} should hold exactly {n} message(s):\n{}",
                self.port,
                summary(&messages)
            );
            if Instant::now() >= until {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The `X-RcptTo` and `Subject` lines of each message, for failure messages.
fn summary(messages: &[String]) -> String {
    messages
        .iter()
        .map(|m| {
            m.lines()
                .filter(|l| l.starts_with("X-RcptTo:") || l.starts_with("Subject:"))
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.kill_child();
    }
}

/// Sends a signal by name (`TERM`, `STOP`, `CONT`) to one process we started, with the shell's
/// built-in `kill` (the workspace forbids `unsafe`, and /bin/sh is on every Debian machine
/// where a `kill` binary may not be).
fn signal(pid: u32, name: &str) -> std::io::Result<()> {
    let status = Command::new("/bin/sh")
        .args(["-c", "kill -s \"$0\" \"$1\"", name, &pid.to_string()])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "kill -s {name} {pid} exited with {status}"
        )))
    }
}

/// Writes `dir/sendmail`, an executable that runs msmtp relaying to 127.0.0.1:`port` (no
/// authentication, no TLS, the envelope sender taken from `-f` as given) with all its
/// arguments passed through, so authd can use it as its sendmail program. msmtp's own log is
/// `dir/msmtp.log`.
pub fn sendmail_program(dir: &Path, port: u16) -> PathBuf {
    require_msmtp();
    std::fs::create_dir_all(dir).expect("folder for the sendmail program");
    let config = dir.join("msmtprc");
    let log = dir.join("msmtp.log");
    std::fs::write(
        &config,
        format!(
            "defaults\n\
             auth off\n\
             tls off\n\
             syslog off\n\
             logfile {log}\n\
             account default\n\
             host 127.0.0.1\n\
             port {port}\n\
             from authd-tests@example.org\n\
             allow_from_override on\n\
             set_from_header off\n",
            log = log.display()
        ),
    )
    .expect("write the msmtp configuration");
    set_mode(&config, 0o600);
    let program = dir.join("sendmail");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\nexec {MSMTP} --file='{}' \"$@\"\n",
            config.display()
        ),
    )
    .expect("write the sendmail program");
    set_mode(&program, 0o755);
    program
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Creates an active user with the real CLI (`authd user create`), on the database at `db_url`.
pub fn create_user(program: &str, db_url: &str, email: &str, password: &str) {
    let mut child = Command::new(program)
        .args(["user", "create", "--email", email])
        .env("AUTHD_ENV", "development")
        .env("AUTHD__DATABASE__URL", db_url)
        .env("AUTHD__LOG__LEVEL", "warn")
        .env("AUTHD__SECRETS__OTP_KEY", TEST_OTP_KEY)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("authd user create runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("password on stdin");
    let out = child
        .wait_with_output()
        .expect("authd user create finishes");
    assert!(
        out.status.success(),
        "authd user create --email {email} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The real `authd serve` as a process of its own, on a port it chose itself.
#[derive(Debug)]
pub struct AuthdProcess {
    child: Option<Child>,
    port: u16,
    metrics_port: Option<u16>,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl AuthdProcess {
    /// Starts `program serve` on the database at `db_url` with the settings a test process
    /// needs (ports 0, the repository's templates, the shared OTP key, JSON logs, a fast
    /// delivery loop, mail files in its own folder) and then `overrides`, which win. Returns
    /// once the process has logged "authd is serving".
    pub fn start(program: &str, db_url: &str, overrides: &[(&str, &str)]) -> Self {
        Self::start_with_args(program, &["serve"], db_url, overrides)
    }

    /// As [`AuthdProcess::start`], with these command-line arguments (ending in `serve`).
    pub fn start_with_args(
        program: &str,
        args: &[&str],
        db_url: &str,
        overrides: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("working folder of authd");
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(dir.path())
            .env("AUTHD_ENV", "development")
            .env_remove("RUST_LOG")
            .env("AUTHD__HTTP__BIND", "127.0.0.1:0")
            .env("AUTHD__HTTP__WORKERS", "2")
            .env("AUTHD__HTTP__SHUTDOWN_TIMEOUT_SECS", "1")
            .env("AUTHD__METRICS__BIND", "127.0.0.1:0")
            .env("AUTHD__DATABASE__URL", db_url)
            .env("AUTHD__MAIL__TEMPLATES_DIR", crate::templates_dir())
            .env("AUTHD__MAIL__POLL_INTERVAL_MS", "100")
            .env("AUTHD__SECRETS__OTP_KEY", TEST_OTP_KEY)
            .env("AUTHD__LOG__FORMAT", "json")
            .env("AUTHD__LIMITS__IP_LOGIN__CAPACITY", "100000")
            .env("AUTHD__LIMITS__IP_RESET__CAPACITY", "100000")
            .env("AUTHD__LOG__LEVEL", "info")
            .env(
                "AUTHD__ORIGINS__DEFAULT__FILE__DIR",
                dir.path().join("mail").display().to_string(),
            )
            .env(
                "AUTHD__ORIGINS__ACME__FILE__DIR",
                dir.path().join("mail-acme").display().to_string(),
            );
        for (k, v) in overrides {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let stderr = child.stderr.take().expect("stderr of authd");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(ports) = serving_ports(&line) {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(ports);
                        }
                    }
                    if let Ok(mut log) = log.lock() {
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
            })
        };
        let (port, metrics_port) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(ports) => ports,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                let _ = reader.join();
                let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                panic!("authd did not log \"authd is serving\" (exit: {status:?}):\n{log}");
            }
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            child: Some(child),
            port,
            metrics_port,
            log,
            reader: Some(reader),
            client,
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the metrics listener.
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port.expect("authd runs with metrics enabled")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The process's Prometheus exposition (`/metrics` on its metrics listener).
    pub async fn metrics(&self) -> String {
        let port = self.metrics_port.expect("authd runs with metrics enabled");
        let res = self
            .client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .expect("metrics reach authd");
        assert_eq!(res.status(), 200);
        res.text().await.expect("metrics body")
    }

    /// Everything the process has written to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::read(
            self.client
                .get(self.url(path))
                .send()
                .await
                .expect("request reaches authd"),
        )
        .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        let res = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} reaches authd on port {}: {e}", self.port));
        Reply::read(res).await
    }

    /// SIGKILL: the process dies at once, whatever it was doing.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// SIGTERM, then waits up to `timeout` for the process to exit; returns its status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("authd is running");
        signal(child.id(), "TERM").expect("SIGTERM to authd");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for authd") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "authd did not exit within {timeout:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }
}

impl Drop for AuthdProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The HTTP and metrics ports of the start-up log line (`"message": "authd is serving"`, JSON
/// format).
fn serving_ports(line: &str) -> Option<(u16, Option<u16>)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields").unwrap_or(&v);
    if fields.get("message")?.as_str()? != "authd is serving" {
        return None;
    }
    let port = u16::try_from(fields.get("port")?.as_u64()?).ok()?;
    let metrics_port = fields
        .get("metrics_port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok());
    Some((port, metrics_port))
}
