//! A real `redis-server` for tests: started on a free loopback port, empty, without persistence,
//! killed on drop. Tests that need Redis use this rather than a shared server, so they can kill
//! and restart it (Redis dying mid-run) without disturbing each other.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A redis-server child process.
pub struct RedisServer {
    port: u16,
    /// Extra arguments (a cluster node's settings, TLS).
    extra: Vec<String>,
    /// For a TLS server: its password and the CA file that signed its certificate.
    tls: Option<(String, std::path::PathBuf)>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

impl RedisServer {
    /// Starts one. Panics with a clear message if `redis-server` is not installed: tests that
    /// need it must not silently skip (`scripts/setup.sh` installs it).
    pub fn start() -> Self {
        Self::start_with(Vec::new())
    }

    fn start_with(extra: Vec<String>) -> Self {
        let mut server = Self {
            port: free_port(),
            extra,
            tls: None,
            child: None,
        };
        server.spawn();
        server
    }

    /// Starts one that takes only TLS connections and requires `password`, with a certificate
    /// for 127.0.0.1 signed by a CA made for it (`openssl`). Clients trust the CA through
    /// [`RedisServer::ca_file`] (`SSL_CERT_FILE`).
    pub fn start_tls(password: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("exai-redis-tls-{}-{}", std::process::id(), free_port()));
        let _ = std::fs::create_dir_all(&dir);
        let path = |name: &str| dir.join(name).display().to_string();
        let _ = std::fs::write(path("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
        let steps: [&[&str]; 3] = [
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=exai test CA",
                "-keyout",
                &path("ca.key"),
                "-out",
                &path("ca.crt"),
            ],
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                &path("server.key"),
                "-out",
                &path("server.csr"),
            ],
            &[
                "x509",
                "-req",
                "-days",
                "1",
                "-in",
                &path("server.csr"),
                "-CA",
                &path("ca.crt"),
                "-CAkey",
                &path("ca.key"),
                "-CAcreateserial",
                "-extfile",
                &path("ext.cnf"),
                "-out",
                &path("server.crt"),
            ],
        ];
        for args in steps {
            let made = Command::new("openssl")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            assert!(
                made.is_ok_and(|s| s.success()),
                "openssl {args:?} failed (scripts/setup.sh installs openssl)"
            );
        }
        let port = free_port();
        let mut server = Self {
            port,
            extra: [
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                &path("server.crt"),
                "--tls-key-file",
                &path("server.key"),
                "--tls-ca-cert-file",
                &path("ca.crt"),
                "--tls-auth-clients",
                "no",
                "--requirepass",
                password,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            tls: Some((password.to_string(), dir.join("ca.crt"))),
            child: None,
        };
        server.spawn();
        server
    }

    /// The CA that signed a TLS server's certificate.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.tls.as_ref().map(|(_, ca)| ca.as_path())
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}); install it (scripts/setup.sh does)"));
        self.child = Some(child);
        for _ in 0..500 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Its URL.
    pub fn url(&self) -> String {
        match &self.tls {
            Some((password, _)) => format!("rediss://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// Kills it, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of real redis-server nodes on loopback, each holding a share of the slots
/// (no replicas), created with `redis-cli --cluster create`. Killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    /// Starts `n` (at least 3) nodes and joins them into a cluster; waits until it is ok.
    pub fn start(n: usize) -> Self {
        let dir = std::env::temp_dir().join(format!("exai-redis-cluster-{}-{}", std::process::id(), free_port()));
        let _ = std::fs::create_dir_all(&dir);
        let nodes: Vec<RedisServer> = (0..n)
            .map(|i| {
                let conf = dir.join(format!("nodes-{i}.conf"));
                RedisServer::start_with(vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    conf.display().to_string(),
                    "--cluster-node-timeout".into(),
                    "2000".into(),
                    "--dir".into(),
                    dir.display().to_string(),
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); install redis-tools (scripts/setup.sh does)"));
        assert!(created.success(), "redis-cli --cluster create failed");
        for _ in 0..500 {
            let ok = nodes.iter().all(|n| {
                Command::new("redis-cli")
                    .args(["-p", &n.port.to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
            if ok {
                return Self { nodes, dir };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the Redis cluster did not become ok");
    }

    /// Its URL, as `REDIS_URL` takes it: `redis+cluster://host:port,host:port,…`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis+cluster://{}", nodes.join(","))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
