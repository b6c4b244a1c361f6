//! Real `redis-server` processes on free loopback ports, for the tests.
//! Never a mock: if `redis-server` is missing the tests fail (the README's
//! test command installs it).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let s = Self::reserved(extra);
        s.launch();
        s
    }

    /// A server on a free port, not started yet ([`launch`](Self::launch)
    /// starts it): for tests of clients started while Redis is down.
    pub fn reserved(extra: &[&str]) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("ratebound-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        RedisServer {
            port,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn launch(&self) {
        let status = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--pidfile")
            .arg(self.dir.join("redis.pid"))
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .args(&self.extra)
            .status()
            .expect("redis-server must be installed (apt-get install redis-server)");
        assert!(status.success(), "redis-server failed to start");
        let deadline = Instant::now() + Duration::from_secs(10);
        while cli(self.port, &["PING"]).as_deref() != Some("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server on {} did not answer PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn cli(&self, args: &[&str]) -> Option<String> {
        cli(self.port, args)
    }

    /// The URL of a user allowed every command but `denied` (ACL `-cmd`).
    #[allow(dead_code)] // not every test binary has such a user
    pub fn url_of_user_denied(&self, denied: &[&str]) -> String {
        let rules: Vec<String> = denied.iter().map(|c| format!("-{c}")).collect();
        let mut args = vec![
            "ACL", "SETUSER", "limited", "on", ">pw", "~*", "&*", "+@all",
        ];
        args.extend(rules.iter().map(String::as_str));
        self.cli(&args).expect("ACL SETUSER");
        format!("redis://limited:pw@127.0.0.1:{}/", self.port)
    }

    /// Kill it hard (SIGKILL), as a crash would.
    pub fn kill(&self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("redis.pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while cli(self.port, &["PING"]).is_some() {
            assert!(Instant::now() < deadline, "redis-server did not die");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let pid = std::fs::read_to_string(self.dir.join("redis.pid")).expect("a running server");
        let ok = Command::new("kill")
            .args([sig, pid.trim()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig} failed");
    }

    /// Freeze it (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaw it (SIGCONT): it runs what arrived meanwhile.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Start it again on the same port (empty: no persistence, no scripts).
    pub fn restart(&self) {
        self.launch();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A frozen server would ignore the shutdown.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("redis.pid")) {
            let _ = Command::new("kill").args(["-CONT", pid.trim()]).status();
        }
        let _ = cli(self.port, &["shutdown", "nosave"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A 3-master Redis Cluster on loopback.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<_> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = nodes.iter().all(|n| {
                n.cli(&["CLUSTER", "INFO"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))
            });
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }
}
