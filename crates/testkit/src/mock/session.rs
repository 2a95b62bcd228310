//! One client connection of the mock server: startup with trust auth, then simple and extended
//! queries answered from the [`Script`](super::Script).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pgsplit_wire::frontend::{self, FrontendMessage};
use pgsplit_wire::{ErrorFields, Frame, StartupPacket, encode, next_frame, next_startup, sqlstate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::script::Reply;
use super::{Received, Shared};

/// Largest message the mock accepts.
const MAX_MESSAGE: usize = 1 << 30;
/// OID of type `text`, the type of every mock column and unspecified parameter.
const TEXT_OID: u32 = 25;

/// The session is over: the peer went away or sent Terminate, or the script closed the connection.
struct Closed;

type Step<T> = Result<T, Closed>;

/// The connection and the state of one mock session.
pub(super) struct Session {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    shared: Arc<Shared>,
    pid: u32,
    cancel: Arc<Notify>,
    status: u8,
    statements: HashMap<String, (String, usize)>,
    portals: HashMap<String, String>,
    /// An extended-protocol error was sent: ignore everything until Sync.
    skipping: bool,
}

impl Session {
    /// Serves one accepted connection until it ends.
    pub(super) async fn serve(stream: TcpStream, shared: Arc<Shared>) {
        let pid = shared.next_pid();
        let mut s = Session {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            shared,
            pid,
            cancel: Arc::new(Notify::new()),
            status: b'I',
            statements: HashMap::new(),
            portals: HashMap::new(),
            skipping: false,
        };
        if let Ok(true) = s.startup().await {
            let _ = s.run().await;
        }
        s.shared.cancels.lock().remove(&s.pid);
    }

    /// Returns true when a session began, false for a cancel request.
    async fn startup(&mut self) -> Step<bool> {
        loop {
            let packet = loop {
                match next_startup(&mut self.rbuf, MAX_MESSAGE) {
                    Ok(Some(p)) => break p,
                    Ok(None) => self.fill().await?,
                    Err(_) => return Err(Closed),
                }
            };
            match packet {
                StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                    encode::ssl_response(&mut self.wbuf, false);
                    self.flush().await?;
                }
                StartupPacket::Cancel { pid, secret } => {
                    self.shared.record(Received::Cancel { pid, secret });
                    if secret == super::secret_of(pid)
                        && let Some(n) = self.shared.cancels.lock().get(&pid)
                    {
                        n.notify_one();
                    }
                    return Ok(false);
                }
                StartupPacket::Startup { params, .. } => {
                    self.greet(&params);
                    self.shared.record(Received::Startup(params));
                    self.shared
                        .cancels
                        .lock()
                        .insert(self.pid, self.cancel.clone());
                    self.flush().await?;
                    return Ok(true);
                }
            }
        }
    }

    fn greet(&mut self, params: &[(String, String)]) {
        let param = |name: &str| {
            params
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let b = &mut self.wbuf;
        encode::auth_ok(b);
        for (name, value) in [
            ("server_version", "15.0 (pgsplit mock)"),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("IntervalStyle", "postgres"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("TimeZone", "UTC"),
            ("is_superuser", "off"),
            ("application_name", param("application_name").unwrap_or("")),
            ("session_authorization", param("user").unwrap_or("")),
        ] {
            encode::parameter_status(b, name, value);
        }
        encode::backend_key_data(b, self.pid, super::secret_of(self.pid));
        encode::ready_for_query(b, b'I');
    }

    async fn run(&mut self) -> Step<()> {
        loop {
            let frame = self.read_frame().await?;
            let Ok(msg) = frontend::parse(&frame) else {
                self.shared.record(Received::Other(frame.tag()));
                let e = ErrorFields::fatal(sqlstate::PROTOCOL_VIOLATION, "mock: bad message");
                encode::error_response(&mut self.wbuf, &e);
                self.flush().await?;
                return Err(Closed);
            };
            self.shared.record(Received::from_message(&msg));
            if self.skipping && !matches!(msg, FrontendMessage::Sync) {
                continue;
            }
            match msg {
                FrontendMessage::Query { sql } => {
                    let replies = self.shared.script.answer(sql);
                    self.play(&replies, true).await?;
                    encode::ready_for_query(&mut self.wbuf, self.status);
                    self.flush().await?;
                }
                FrontendMessage::Parse {
                    name,
                    sql,
                    param_types,
                } => {
                    let n = param_types.len().max(max_placeholder(sql));
                    self.statements.insert(name.to_owned(), (sql.to_owned(), n));
                    encode::parse_complete(&mut self.wbuf);
                }
                FrontendMessage::Bind { portal, statement } => {
                    let sql = self.statements.get(statement).map(|(sql, _)| sql.clone());
                    match sql {
                        Some(sql) => {
                            self.portals.insert(portal.to_owned(), sql);
                            encode::bind_complete(&mut self.wbuf);
                        }
                        None => self.extended_error("mock: unknown prepared statement"),
                    }
                }
                FrontendMessage::Describe { kind, name } => self.describe(kind, name),
                FrontendMessage::Execute { portal, .. } => {
                    match self.portals.get(portal).cloned() {
                        Some(sql) => {
                            let replies = self.shared.script.answer(&sql);
                            self.play(&replies, false).await?;
                        }
                        None => self.extended_error("mock: unknown portal"),
                    }
                }
                FrontendMessage::Close { kind, name } => {
                    if kind == b'S' {
                        self.statements.remove(name);
                    } else {
                        self.portals.remove(name);
                    }
                    encode::close_complete(&mut self.wbuf);
                }
                FrontendMessage::Sync => {
                    self.skipping = false;
                    self.portals.remove("");
                    encode::ready_for_query(&mut self.wbuf, self.status);
                    self.flush().await?;
                }
                FrontendMessage::Flush => self.flush().await?,
                FrontendMessage::Terminate => return Err(Closed),
                // COPY messages outside COPY, function calls, stray passwords.
                _ => self.extended_error("mock: unexpected message"),
            }
        }
    }

    fn describe(&mut self, kind: u8, name: &str) {
        let (sql, params) = if kind == b'S' {
            match self.statements.get(name) {
                Some((sql, n)) => (sql.clone(), Some(*n)),
                None => return self.extended_error("mock: unknown prepared statement"),
            }
        } else {
            match self.portals.get(name) {
                Some(sql) => (sql.clone(), None),
                None => return self.extended_error("mock: unknown portal"),
            }
        };
        if let Some(n) = params {
            encode::parameter_description(&mut self.wbuf, &vec![TEXT_OID; n]);
        }
        let replies = self.shared.script.answer(&sql);
        match replies.iter().find(|r| matches!(r, Reply::Rows { .. })) {
            Some(Reply::Rows { columns, .. }) => row_description(&mut self.wbuf, columns),
            _ => encode::no_data(&mut self.wbuf),
        }
    }

    fn extended_error(&mut self, message: &str) {
        let e = ErrorFields::error(sqlstate::PROTOCOL_VIOLATION, message);
        self.send_error(&e);
        self.skipping = true;
    }

    fn send_error(&mut self, e: &ErrorFields) {
        encode::error_response(&mut self.wbuf, e);
        if self.status == b'T' {
            self.status = b'E';
        }
    }

    /// Plays the replies of one statement; `simple` adds RowDescription before rows.
    async fn play(&mut self, replies: &[Reply], simple: bool) -> Step<()> {
        for reply in replies {
            match reply {
                Reply::Rows { columns, rows } => {
                    if simple {
                        row_description(&mut self.wbuf, columns);
                    }
                    for row in rows {
                        let values: Vec<Option<&[u8]>> = row
                            .iter()
                            .map(|v| v.as_deref().map(str::as_bytes))
                            .collect();
                        encode::data_row(&mut self.wbuf, &values);
                        if self.wbuf.len() > 64 * 1024 {
                            self.flush().await?;
                        }
                    }
                    encode::command_complete(&mut self.wbuf, &format!("SELECT {}", rows.len()));
                }
                Reply::Command(tag) => encode::command_complete(&mut self.wbuf, tag),
                Reply::EmptyQuery => encode::empty_query_response(&mut self.wbuf),
                Reply::Error(e) => {
                    self.send_error(e);
                    self.skipping = !simple;
                    return Ok(());
                }
                Reply::Notice(e) => encode::notice_response(&mut self.wbuf, e),
                Reply::Notification { channel, payload } => {
                    encode::notification_response(&mut self.wbuf, self.pid, channel, payload);
                }
                Reply::ParameterStatus(name, value) => {
                    encode::parameter_status(&mut self.wbuf, name, value);
                }
                Reply::Raw(bytes) => self.wbuf.extend_from_slice(bytes),
                Reply::Sleep(d) => {
                    self.flush().await?;
                    let cancel = self.cancel.clone();
                    tokio::select! {
                        () = tokio::time::sleep(*d) => {}
                        () = cancel.notified() => {
                            let e = ErrorFields::error(
                                sqlstate::QUERY_CANCELED,
                                "canceling statement due to user request",
                            );
                            self.send_error(&e);
                            self.skipping = !simple;
                            return Ok(());
                        }
                    }
                }
                Reply::CopyOut(chunks) => {
                    encode::copy_out_response(&mut self.wbuf, 0, &[0]);
                    for chunk in chunks {
                        encode::copy_data(&mut self.wbuf, chunk);
                    }
                    encode::copy_done(&mut self.wbuf);
                    encode::command_complete(&mut self.wbuf, &format!("COPY {}", chunks.len()));
                }
                Reply::CopyIn => {
                    if !self.copy_in().await? {
                        self.skipping = !simple;
                        return Ok(());
                    }
                }
                Reply::Status(s) => self.status = *s,
                Reply::Close => {
                    self.flush().await?;
                    return Err(Closed);
                }
            }
        }
        Ok(())
    }

    /// Runs COPY FROM STDIN; false when the client failed it.
    async fn copy_in(&mut self) -> Step<bool> {
        encode::copy_in_response(&mut self.wbuf, 0, &[0]);
        self.flush().await?;
        let mut lines = 0_usize;
        loop {
            let frame = self.read_frame().await?;
            match frontend::parse(&frame) {
                Ok(FrontendMessage::CopyData { data }) => {
                    lines += data.iter().filter(|b| **b == b'\n').count();
                    self.shared.record(Received::CopyData(data.len()));
                }
                Ok(FrontendMessage::CopyDone) => {
                    self.shared.record(Received::CopyDone);
                    encode::command_complete(&mut self.wbuf, &format!("COPY {lines}"));
                    return Ok(true);
                }
                Ok(FrontendMessage::CopyFail { message }) => {
                    self.shared.record(Received::CopyFail(message.to_owned()));
                    let text = format!("COPY from stdin failed: {message}");
                    self.send_error(&ErrorFields::error(sqlstate::QUERY_CANCELED, text));
                    return Ok(false);
                }
                // PostgreSQL ignores Flush and Sync during COPY.
                Ok(FrontendMessage::Flush | FrontendMessage::Sync) => {}
                _ => {
                    let e =
                        ErrorFields::error(sqlstate::PROTOCOL_VIOLATION, "mock: bad COPY message");
                    self.send_error(&e);
                    return Ok(false);
                }
            }
        }
    }

    async fn read_frame(&mut self) -> Step<Frame> {
        loop {
            match next_frame(&mut self.rbuf, MAX_MESSAGE) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => self.fill().await?,
                Err(_) => return Err(Closed),
            }
        }
    }

    async fn fill(&mut self) -> Step<()> {
        match self.stream.read_buf(&mut self.rbuf).await {
            Ok(0) | Err(_) => Err(Closed),
            Ok(_) => Ok(()),
        }
    }

    async fn flush(&mut self) -> Step<()> {
        let out: Bytes = self.wbuf.split().freeze();
        self.stream.write_all(&out).await.map_err(|_| Closed)
    }
}

fn row_description(buf: &mut BytesMut, columns: &[String]) {
    let cols: Vec<(&str, u32)> = columns.iter().map(|c| (c.as_str(), TEXT_OID)).collect();
    encode::row_description(buf, &cols);
}

/// The highest `$n` placeholder in `sql` (0 when there is none).
fn max_placeholder(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let mut max = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'$' {
            let digits: String = bytes[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .map(|c| char::from(*c))
                .collect();
            if let Ok(n) = digits.parse::<usize>() {
                max = max.max(n);
            }
        }
    }
    max
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_placeholders() {
        assert_eq!(super::max_placeholder("SELECT 1"), 0);
        assert_eq!(super::max_placeholder("SELECT $2, $1, $10"), 10);
        assert_eq!(super::max_placeholder("SELECT '$' || $1"), 1);
    }
}
