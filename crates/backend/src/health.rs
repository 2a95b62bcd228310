//! Health probes: one kept-open connection per server, one query per probe, role and WAL position out.
//!
//! A [`Prober`] owns at most one connection to its server. [`Prober::probe`] (re)connects when
//! it has none, runs [`PROBE_SQL`] in one round trip and returns a [`ServerStatus`]; any
//! failure (connect error, broken connection, server error, malformed answer, timeout) drops
//! the connection, so the next probe starts with a fresh one.
//!
//! What it does not do: it does not decide what a result means for routing (down after one
//! failure, up after `rise` successes, lag limits): the caller feeds results to the topology.

use std::fmt;

use tokio::time::{Duration, timeout};

use crate::tls::ServerTls;
use crate::{BackendError, ConnectParams, ServerConn, connect};

/// The probe query: role, the WAL position that matters for that role, and the position a
/// replica has received (which may be ahead of what it has replayed). One round trip.
pub const PROBE_SQL: &str = "SELECT pg_is_in_recovery(), \
     CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, \
     pg_last_wal_receive_lsn()";

/// `application_name` of probe connections, so operators can tell them apart in
/// `pg_stat_activity`.
pub const PROBE_APPLICATION_NAME: &str = "pgsplit-health";

/// Largest message accepted on a probe connection; probe answers are a few dozen bytes.
const PROBE_MAX_MESSAGE: usize = 1024 * 1024;

/// Where and how to probe one server.
#[derive(Clone, PartialEq, Eq)]
pub struct ProbeSettings {
    /// `host:port`.
    pub addr: String,
    /// Role to log in as.
    pub user: String,
    /// Password, if the server asks for one.
    pub password: Option<String>,
    /// Database to connect to.
    pub database: String,
    /// Limit for one probe, connect included.
    pub timeout: Duration,
    /// Whether and how to use TLS (the server's `sslmode`).
    pub tls: std::sync::Arc<ServerTls>,
}

impl fmt::Debug for ProbeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeSettings")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What one successful probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerStatus {
    /// `pg_is_in_recovery()`: a hot standby.
    pub in_recovery: bool,
    /// On a replica, `pg_last_wal_replay_lsn()` (`None` before it has replayed anything); on
    /// a primary, `pg_current_wal_lsn()`. As a byte position in the WAL stream.
    pub position: Option<u64>,
    /// `pg_last_wal_receive_lsn()`: WAL a replica has received (`None` on a primary and on a
    /// replica that has not streamed yet).
    pub received: Option<u64>,
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Connecting or querying failed, or the server answered with an error.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The probe did not finish within its timeout.
    #[error("server {addr}: health probe timed out after {limit:?}")]
    Timeout {
        /// The server's address.
        addr: String,
        /// The limit that passed.
        limit: Duration,
    },
    /// The answer did not have the expected shape.
    #[error("server {addr}: unexpected health probe answer: {what}")]
    Malformed {
        /// The server's address.
        addr: String,
        /// What was wrong.
        what: String,
    },
}

/// Probes one server, keeping its connection open between probes.
#[derive(Debug)]
pub struct Prober {
    settings: ProbeSettings,
    conn: Option<ServerConn>,
}

impl Prober {
    /// A prober for a server; it connects on the first probe.
    pub fn new(settings: ProbeSettings) -> Prober {
        Prober {
            settings,
            conn: None,
        }
    }

    /// Where and how it probes.
    pub fn settings(&self) -> &ProbeSettings {
        &self.settings
    }

    /// Whether a connection is open (the last probe succeeded).
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Runs one probe within the settings' timeout, connecting first if needed.
    ///
    /// Cancel safe in the sense that matters: the connection is taken out of the prober for
    /// the duration of the probe, so a dropped probe leaves the prober without a connection
    /// (the next probe reconnects) rather than with one that is out of step.
    pub async fn probe(&mut self) -> Result<ServerStatus, ProbeError> {
        let limit = self.settings.timeout;
        let conn = self.conn.take();
        let settings = &self.settings;
        match timeout(limit, probe_on(settings, conn)).await {
            Ok(Ok((status, conn))) => {
                self.conn = Some(conn);
                Ok(status)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ProbeError::Timeout {
                addr: self.settings.addr.clone(),
                limit,
            }),
        }
    }

    /// Closes the connection, if any, with a Terminate message.
    pub async fn close(self) {
        if let Some(conn) = self.conn {
            conn.close().await;
        }
    }
}

/// Connects if `conn` is `None`, runs the probe query and parses the answer. On error the
/// connection is closed.
async fn probe_on(
    settings: &ProbeSettings,
    conn: Option<ServerConn>,
) -> Result<(ServerStatus, ServerConn), ProbeError> {
    let mut conn = match conn {
        Some(conn) => conn,
        None => {
            let params = [(
                "application_name".to_owned(),
                PROBE_APPLICATION_NAME.to_owned(),
            )];
            connect(&ConnectParams {
                addr: &settings.addr,
                user: &settings.user,
                password: settings.password.as_deref(),
                database: &settings.database,
                params: &params,
                connect_timeout: settings.timeout,
                max_message: PROBE_MAX_MESSAGE,
                // A probe keeps its connection; it logs in again only after a failure.
                scram_keys: None,
                tls: &settings.tls,
            })
            .await?
        }
    };
    let rows = match conn.simple_query(PROBE_SQL).await {
        Ok(rows) => rows,
        Err(e) => {
            conn.close().await;
            return Err(e.into());
        }
    };
    match parse_status(&rows) {
        Ok(status) if conn.txn_status() == b'I' => Ok((status, conn)),
        Ok(_) => {
            conn.close().await;
            Err(ProbeError::Malformed {
                addr: settings.addr.clone(),
                what: "the connection was left inside a transaction".to_owned(),
            })
        }
        Err(what) => {
            conn.close().await;
            Err(ProbeError::Malformed {
                addr: settings.addr.clone(),
                what,
            })
        }
    }
}

/// Reads the probe's one row: a boolean, then two nullable LSNs.
///
/// Only the boolean is required: the two positions may be missing or NULL (a replica that has
/// not replayed or received anything yet, or a minimal server that answers only the role).
pub fn parse_status(rows: &[Vec<Option<String>>]) -> Result<ServerStatus, String> {
    let [row] = rows else {
        return Err(format!("{} rows instead of 1", rows.len()));
    };
    let in_recovery = match row.first().map(Option::as_deref) {
        Some(Some("t")) => true,
        Some(Some("f")) => false,
        other => return Err(format!("pg_is_in_recovery() was {other:?}")),
    };
    let lsn = |i: usize| -> Result<Option<u64>, String> {
        match row.get(i).map(Option::as_deref) {
            None | Some(None) => Ok(None),
            Some(Some(text)) => parse_lsn(text)
                .map(Some)
                .ok_or_else(|| format!("{text:?} is not a WAL position")),
        }
    };
    Ok(ServerStatus {
        in_recovery,
        position: lsn(1)?,
        received: lsn(2)?,
    })
}

/// Parses PostgreSQL's text form of a `pg_lsn`, `X/Y` with each half up to 8 hex digits,
/// into a byte position (`X << 32 | Y`).
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    let half = |s: &str| -> Option<u64> {
        if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(s, 16).ok()
    };
    Some((half(hi)? << 32) | half(lo)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[Option<&str>]) -> Vec<Vec<Option<String>>> {
        vec![values.iter().map(|v| v.map(str::to_owned)).collect()]
    }

    #[test]
    fn lsn_text_to_bytes() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("0/3000148"), Some(0x300_0148));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert_eq!(parse_lsn("16/b374d848"), Some((0x16 << 32) | 0xB374_D848));
        assert_eq!(parse_lsn("FFFFFFFF/FFFFFFFF"), Some(u64::MAX));
    }

    #[test]
    fn malformed_lsn_text() {
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "0",
            "0/0/0",
            "G/0",
            "0/-1",
            "+1/0",
            "1FFFFFFFF/0",
            " 0/0",
        ] {
            assert_eq!(parse_lsn(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn primary_answer() {
        let s = parse_status(&row(&[Some("f"), Some("0/3000148"), None])).unwrap();
        assert_eq!(
            s,
            ServerStatus {
                in_recovery: false,
                position: Some(0x300_0148),
                received: None,
            }
        );
    }

    #[test]
    fn replica_answer() {
        let s = parse_status(&row(&[Some("t"), Some("0/5000000"), Some("0/5000060")])).unwrap();
        assert!(s.in_recovery);
        assert_eq!(s.position, Some(0x500_0000));
        assert_eq!(s.received, Some(0x500_0060));
    }

    #[test]
    fn replica_without_replay_yet_has_no_position() {
        let s = parse_status(&row(&[Some("t"), None, None])).unwrap();
        assert!(s.in_recovery);
        assert_eq!((s.position, s.received), (None, None));
    }

    #[test]
    fn role_only_answer_is_accepted() {
        let s = parse_status(&row(&[Some("f")])).unwrap();
        assert!(!s.in_recovery);
        assert_eq!(s.position, None);
    }

    #[test]
    fn bad_answers_are_errors() {
        assert!(parse_status(&[]).is_err());
        assert!(parse_status(&row(&[None, Some("0/1")])).is_err());
        assert!(parse_status(&row(&[Some("yes"), Some("0/1")])).is_err());
        assert!(parse_status(&row(&[Some("f"), Some("nope")])).is_err());
        let mut two = row(&[Some("f")]);
        two.extend(row(&[Some("t")]));
        assert!(parse_status(&two).is_err());
    }
}
