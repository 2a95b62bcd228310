//! pgsplit's Prometheus endpoint as the bench reads it: one plain HTTP GET of `/metrics` on the
//! admin port, and the few series it reports (reads per server role, open client connections).

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The body of `GET /metrics` from pgsplit's admin listener on `127.0.0.1:port`.
pub(crate) fn scrape(port: u16) -> Result<String> {
    let addr = format!("127.0.0.1:{port}");
    let mut stream =
        TcpStream::connect(&addr).with_context(|| format!("connect to pgsplit admin {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(
        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAccept: text/plain\r\n\r\n",
    )?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("read /metrics from {addr}"))?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("no HTTP response from {addr}/metrics");
    };
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "{addr}/metrics answered {:?}",
            head.lines().next().unwrap_or("")
        );
    }
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Ok(unchunk(body));
    }
    Ok(body.to_owned())
}

/// The body of a chunked HTTP/1.1 response (hex size line, data, CRLF, ..., a zero-size chunk).
fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16);
        match size {
            Ok(0) | Err(_) => break,
            Ok(n) if n <= rest.len() => {
                out.push_str(&rest[..n]);
                body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
            }
            Ok(_) => {
                out.push_str(rest);
                break;
            }
        }
    }
    out
}

/// Reads sent to a server so far, from `pgsplit_queries_total{kind="read",role=...}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Reads {
    pub(crate) replica: u64,
    pub(crate) primary: u64,
}

impl Reads {
    pub(crate) fn parse(text: &str) -> Reads {
        let mut reads = Reads::default();
        for line in text.lines() {
            let Some(labels) = line.strip_prefix("pgsplit_queries_total{") else {
                continue;
            };
            if !labels.contains("kind=\"read\"") {
                continue;
            }
            let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            if labels.contains("role=\"replica\"") {
                reads.replica += value as u64;
            } else if labels.contains("role=\"primary\"") {
                reads.primary += value as u64;
            }
        }
        reads
    }

    /// What happened between `self` (before) and `after`.
    pub(crate) fn delta(self, after: Reads) -> Reads {
        Reads {
            replica: after.replica.saturating_sub(self.replica),
            primary: after.primary.saturating_sub(self.primary),
        }
    }
}

/// `pgsplit_client_connections`: the client connections pgsplit has open.
pub(crate) fn client_connections(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("pgsplit_client_connections "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

#[cfg(test)]
mod tests {
    use super::{Reads, client_connections, unchunk};

    const SAMPLE: &str = "\
# HELP pgsplit_queries_total Units of SQL sent to a server, by server, role and statement kind.
# TYPE pgsplit_queries_total counter
pgsplit_queries_total{kind=\"read\",role=\"primary\",server=\"primary\"} 7
pgsplit_queries_total{kind=\"read\",role=\"replica\",server=\"replica1\"} 100
pgsplit_queries_total{kind=\"read\",role=\"replica\",server=\"replica2\"} 99
pgsplit_queries_total{kind=\"write\",role=\"primary\",server=\"primary\"} 21
pgsplit_client_connections 1000
pgsplit_client_connections_total 1234
";

    #[test]
    fn reads_by_role() {
        let before = Reads::parse(SAMPLE);
        assert_eq!(
            before,
            Reads {
                replica: 199,
                primary: 7
            }
        );
        let after = Reads {
            replica: 299,
            primary: 10,
        };
        assert_eq!(
            before.delta(after),
            Reads {
                replica: 100,
                primary: 3
            }
        );
        assert_eq!(client_connections(SAMPLE), Some(1000));
        assert_eq!(client_connections("nothing"), None);
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            unchunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
