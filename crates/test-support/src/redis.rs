//! A real `redis-server` (Debian's, installed by `scripts/install-test-deps`)
//! for the tests of cluster-wide limits: one per test, on a free loopback
//! port, without persistence, killed on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`, which can be stopped and started again on
/// the same port (an outage).
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// With TLS and a password: the TLS port, and what the server is
    /// started with.
    tls_port: Option<u16>,
    args: Vec<String>,
    password: Option<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers.
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            tls_port: None,
            args: Vec::new(),
            password: None,
        };
        server.restart();
        server
    }

    /// One that also listens with TLS (`pki`'s server certificate for
    /// 127.0.0.1, no client certificates) on [`RedisServer::tls_port`],
    /// and wants `password` on both ports.
    pub fn start_secured(pki: &crate::TestPki, password: &str) -> RedisServer {
        let tls_port = free_port();
        let args = [
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &pki.path("server.pem"),
            "--tls-key-file",
            &pki.path("server.key"),
            "--tls-ca-cert-file",
            &pki.path("ca.pem"),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            password,
        ];
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            tls_port: Some(tls_port),
            args: args.iter().map(|a| a.to_string()).collect(),
            password: Some(password.to_owned()),
        };
        server.restart();
        server
    }

    /// The TLS port of [`RedisServer::start_secured`].
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it (SIGKILL: what Redis knew is gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on its port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let program = "/usr/bin/redis-server";
        assert!(
            Path::new(program).exists(),
            "{program} is missing: run scripts/install-test-deps"
        );
        let child = Command::new(program)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.command("PING").contains("PONG") {
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Inline commands on the plain port (`"KEYS *"`, or several joined
    /// by `\r\n`), after `AUTH` if the server wants a password; Redis's raw
    /// answer, empty if it could not be reached.
    pub fn command(&self, command: &str) -> String {
        let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
        if let Some(password) = &self.password {
            if write!(tcp, "AUTH {password}\r\n").is_err() {
                return String::new();
            }
        }
        if write!(tcp, "{command}\r\nQUIT\r\n").is_err() {
            return String::new();
        }
        let mut answer = String::new();
        let _ = tcp.read_to_string(&mut answer);
        answer
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
