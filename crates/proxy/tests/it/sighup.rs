//! `SIGHUP` to the `pgsplit` binary reloads its config file; a refused file is logged with the
//! reason and shown in `/status`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The binary under test, killed (by its own PID) if the test fails before stopping it.
struct Pgsplit {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl Drop for Pgsplit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pgsplit {
    fn start(config: &std::path::Path) -> Pgsplit {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pgsplit"))
            .args(["--config", config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pgsplit");
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Pgsplit { child, log }
    }

    /// The next log line containing `needle`, within 10 s.
    fn log_line(&self, needle: &str) -> String {
        for _ in 0..200 {
            match self.log.recv_timeout(Duration::from_millis(50)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("no log line containing {needle:?}");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    raw.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap()
}

fn yaml(size: u32) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nlog: {{ format: text }}\n\
         users:\n  - {{ name: app, password: app }}\npool: {{ size: {size} }}\n\
         servers:\n  - {{ name: primary, host: 127.0.0.1, port: 1, role: primary }}\n"
    )
}

#[test]
fn sighup_reloads_and_a_refused_file_is_logged_with_its_reason() {
    let dir = std::env::temp_dir().join(format!("pgsplit-sighup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pgsplit.yaml");
    std::fs::write(&path, yaml(3)).unwrap();
    let pgsplit = Pgsplit::start(&path);
    let line = pgsplit.log_line("admin HTTP listening");
    let addr: SocketAddr = line
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no admin address in {line:?}"));
    pgsplit.log_line("pgsplit started");
    assert!(get(addr, "/status").contains("\"generation\":1"));

    // SIGHUP of an unchanged file: reloaded as generation 2 (the watcher sees no change).
    pgsplit.signal("HUP");
    let line = pgsplit.log_line("config reloaded");
    assert!(line.contains("generation=2"), "{line}");
    let status = get(addr, "/status");
    assert!(status.contains("\"last_result\":\"ok\""), "{status}");
    let metrics = get(addr, "/metrics");
    assert!(
        metrics.contains("pgsplit_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("pgsplit_config_generation 2"), "{metrics}");

    // A refused file (size 0): the watcher logs why, and SIGHUP refuses it again.
    std::fs::write(&path, yaml(0)).unwrap();
    let line = pgsplit.log_line("config reload refused");
    let file = path.display().to_string();
    assert!(
        line.contains(&format!("{file}:6:")) && line.contains("pool.size"),
        "{line}"
    );
    pgsplit.signal("HUP");
    pgsplit.log_line("config reload refused");
    let metrics = get(addr, "/metrics");
    assert!(
        metrics.contains("pgsplit_config_reloads_total{result=\"failed\"} 2"),
        "{metrics}"
    );
    let status = get(addr, "/status");
    assert!(
        status.contains("\"last_result\":\"failed\"") && status.contains("pool.size"),
        "{status}"
    );
    assert!(status.contains("\"generation\":2"), "{status}");

    pgsplit.signal("TERM");
    let mut pgsplit = pgsplit;
    let code = pgsplit.child.wait().unwrap();
    assert!(code.success(), "{code:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
