//! The demo gateway binary as a child process, started on a config file
//! of its own, its addresses read from what it prints.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Gateway {
    pub child: Child,
    pub base: String,
    /// The admin side's /metrics, when configured.
    pub metrics: Option<String>,
    /// The config file it was started on (rewritten by reload tests).
    pub config: std::path::PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example binary, built by `cargo test` next to this test.
pub fn gateway_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("gateway");
    assert!(
        bin.exists(),
        "{} is missing: build the examples (cargo test builds them)",
        bin.display()
    );
    bin
}

/// `config` in a file of its own (tests run in parallel).
pub fn config_file(config: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("ratebound-gw-{}-{n}.toml", std::process::id()));
    std::fs::write(&path, config).unwrap();
    path
}

/// Start the gateway on `config`, with `env` set.
pub fn start(config: &str, env: &[(&str, &str)]) -> Gateway {
    let bin = gateway_bin();
    let path = config_file(config);
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&path)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut metrics = None;
    let base = loop {
        let line = lines.next().expect("the gateway exited").unwrap();
        if let Some(rest) = line.strip_prefix("admin on ") {
            metrics = Some(rest.to_owned());
        }
        if let Some(rest) = line.strip_prefix("ratebound gateway on ") {
            break rest.split(',').next().unwrap().to_owned();
        }
    };
    Gateway {
        child,
        base,
        metrics,
        config: path,
    }
}
