//! The response plan: which server messages answer which client request, what each answer
//! becomes for the client (forwarded, swallowed, or made up by pgsplit), and how requests that
//! fail or are skipped undo what they registered.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use bytes::{Bytes, BytesMut};
use pgsplit_backend::StatementCache;
use pgsplit_router::Lsn;
use pgsplit_wire::backend::{self as server_msg, tags as be};
use pgsplit_wire::frame::HEADER_LEN;
use pgsplit_wire::{Frame, SqlState, WireError, encode};

use super::message::respell_error;
use super::{ClientStatements, Name, SERVER_PREFIX, Statement, server_name};

/// What the server's responses must become, in request order (FIFO).
///
/// A plan belongs to one client and lives across the units it runs: it must be empty (and not
/// [awaiting a Sync](ResponsePlan::awaiting_sync)) whenever the client changes server
/// connection, because its entries describe requests sent to one particular connection.
#[derive(Debug, Default)]
pub(crate) struct ResponsePlan {
    /// One entry per request that gets a response, oldest first.
    entries: VecDeque<Entry>,
    /// The server is discarding messages until the next Sync (an extended-protocol message
    /// failed and no Sync had been planned yet): what the client sends meanwhile is forwarded
    /// but never answered.
    skipping: bool,
    /// The server is in COPY FROM STDIN and the client has not ended it yet: the server ignores
    /// the Syncs sent meanwhile.
    copy_in: bool,
    /// The client sent extended-protocol messages that no Sync has closed yet.
    in_batch: bool,
    /// Parses sent per statement id and not answered yet; a failed Parse forgets the id only if
    /// no later Parse of it is still in flight.
    preparing: HashMap<u64, u32>,
    /// The position in the row of pgsplit's write-position query
    /// ([`ResponsePlan::push_capture`]); 0 for none (no row, NULL, an error).
    capture_lsn: u64,
    /// The transaction status its ReadyForQuery reported; 0 until it came.
    capture_status: u8,
    /// The ReadyForQuery just handled answered pgsplit's own query, not a client unit.
    internal_ready: bool,
}

/// One request waiting for its response.
#[derive(Debug)]
struct Entry {
    /// The server messages that belong to it and the one that completes it.
    expect: Expect,
    /// Whether its server messages reach the client (false for what pgsplit injected; an
    /// ErrorResponse is always forwarded, since it answers the client's next request).
    forward: bool,
    /// What to update once it is settled.
    effect: Effect,
}

/// The server messages a request produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// Parse: ParseComplete.
    ParseComplete,
    /// Bind: BindComplete.
    BindComplete,
    /// Close: CloseComplete.
    CloseComplete,
    /// Describe of a statement: ParameterDescription, then RowDescription or NoData.
    StatementDescription,
    /// A statement Describe after its ParameterDescription: RowDescription or NoData.
    ParametersDescribed,
    /// Describe of a portal: RowDescription or NoData.
    PortalDescription,
    /// Execute: rows or COPY traffic, then CommandComplete, EmptyQueryResponse or
    /// PortalSuspended.
    Execute,
    /// Sync: ReadyForQuery.
    Sync,
    /// Query or FunctionCall: anything (several results, errors, COPY), up to ReadyForQuery.
    Query,
    /// A response pgsplit gives itself; the server was sent nothing.
    Synthetic(&'static [u8]),
    /// Where the client ended a COPY FROM STDIN (CopyDone or CopyFail); no response of its own.
    CopyEnd,
}

/// What settling an entry updates.
#[derive(Debug)]
pub(super) enum Effect {
    /// Nothing.
    None,
    /// A client Parse or Close of `name`; `parsed` is the statement id when a Parse was sent.
    Client {
        name: Name,
        ticket: u64,
        parsed: Option<u64>,
    },
    /// A Parse pgsplit injected: its id leaves the cache if it fails.
    Prepare { id: u64 },
    /// The Close of an evicted statement: its id comes back to the cache if it is not executed.
    Evict { id: u64 },
    /// A Bind or Describe of client name `name`, renamed to statement `id`.
    Renamed { id: u64, name: Name },
    /// pgsplit's own Query sent behind a client unit (the write position of a commit): its
    /// answer, errors included, never reaches the client.
    Capture,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Its completing message arrived (or pgsplit answered it).
    Done,
    /// An ErrorResponse answered it, with this SQLSTATE.
    Failed(Option<SqlState>),
    /// The server ignored it, because an earlier message of its batch failed.
    Skipped,
}

/// A server message that does not fit the plan.
///
/// It has already been forwarded to the client when this is returned. The relay should log it
/// and stop trusting the connection: mark it broken so it is closed rather than pooled once the
/// unit ends, because its statement cache or protocol state may no longer match the server.
/// A ReadyForQuery that arrives early re-synchronizes the plan on the next Sync or Query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutOfStep {
    /// Type byte of the message.
    pub(crate) tag: u8,
    /// What the plan expected, if it expected anything.
    pub(crate) expected: Option<&'static str>,
}

impl fmt::Display for OutOfStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = char::from(self.tag);
        match self.expected {
            Some(expected) => write!(f, "server sent '{tag}' while {expected} was due"),
            None => write!(f, "server sent '{tag}' while no response was due"),
        }
    }
}

impl std::error::Error for OutOfStep {}

impl Expect {
    /// What is due, for [`OutOfStep`].
    fn describe(self) -> &'static str {
        match self {
            Expect::ParseComplete => "ParseComplete",
            Expect::BindComplete => "BindComplete",
            Expect::CloseComplete => "CloseComplete",
            Expect::StatementDescription => "ParameterDescription",
            Expect::ParametersDescribed | Expect::PortalDescription => "RowDescription or NoData",
            Expect::Execute => "the result of an Execute",
            Expect::Sync => "ReadyForQuery",
            Expect::Query => "the result of a Query",
            Expect::Synthetic(_) | Expect::CopyEnd => "nothing from the server",
        }
    }
}

/// What one server message does to the front entry.
enum Step {
    /// Belongs to the entry, which stays at the front.
    More,
    /// The ParameterDescription of a statement Describe.
    Described,
    /// CopyInResponse: belongs to the entry, and the server is now in COPY FROM STDIN.
    CopyIn,
    /// Completes the entry.
    Done,
    /// Does not belong to the entry.
    Unexpected,
}

/// How a server message with type `tag` relates to a request expecting `expect`.
fn step(expect: Expect, tag: u8) -> Step {
    match (expect, tag) {
        (Expect::ParseComplete, be::PARSE_COMPLETE)
        | (Expect::BindComplete, be::BIND_COMPLETE)
        | (Expect::CloseComplete, be::CLOSE_COMPLETE)
        | (
            Expect::StatementDescription | Expect::ParametersDescribed | Expect::PortalDescription,
            be::ROW_DESCRIPTION | be::NO_DATA,
        )
        | (Expect::Execute, be::COMMAND_COMPLETE | be::EMPTY_QUERY | be::PORTAL_SUSPENDED)
        | (Expect::Sync | Expect::Query, be::READY_FOR_QUERY) => Step::Done,
        (Expect::StatementDescription, be::PARAMETER_DESCRIPTION) => Step::Described,
        (Expect::Execute | Expect::Query, be::COPY_IN) => Step::CopyIn,
        (Expect::Execute, be::DATA_ROW | be::COPY_OUT | be::COPY_DATA | be::COPY_DONE)
        | (Expect::Execute, be::COPY_BOTH)
        | (Expect::Query, _) => Step::More,
        _ => Step::Unexpected,
    }
}

/// The first column of a DataRow body, as text (`None` for NULL or a malformed row).
fn first_text(body: &[u8]) -> Option<&str> {
    let count = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    if count == 0 {
        return None;
    }
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    let value = body.get(6..6 + len)?;
    std::str::from_utf8(value).ok()
}

/// What [`ResponsePlan::forward_run`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// Bytes at the front of the buffer to forward as they are.
    pub(crate) len: usize,
    /// The run ends with a ReadyForQuery that answered a Query or Sync: its transaction
    /// status.
    pub(crate) ready: Option<u8>,
}

impl ResponsePlan {
    /// Whether no response is due from the server.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.iter().all(|e| e.expect == Expect::CopyEnd)
    }

    /// The run of whole messages at the front of `buf` that are only forwarded: each is a
    /// row, a notice, or a message that continues or completes the front request (forwarded,
    /// answered by the server) without anything else to do than settling it. The plan advances
    /// past the run as it would message by message, so the caller forwards the run as one
    /// chunk. The run stops at what needs a closer look (errors, ParameterStatus, COPY IN, a
    /// request answered by pgsplit or swallowed, an unexpected message), and just after a
    /// ReadyForQuery that answers the front Query or Sync: its transaction status is in
    /// [`Run::ready`], for the caller to note before anything else.
    pub(crate) fn forward_run(
        &mut self,
        buf: &[u8],
        max: usize,
        client: &mut ClientStatements,
        server: &mut StatementCache,
    ) -> Result<Run, WireError> {
        let mut off = 0;
        let mut front = self.forwarded_front();
        while buf.len() - off >= HEADER_LEN {
            let tag = buf[off];
            let declared =
                u32::from_be_bytes([buf[off + 1], buf[off + 2], buf[off + 3], buf[off + 4]]);
            if declared < 4 {
                return Err(WireError::BadLength { tag, len: declared });
            }
            let len = declared as usize + 1;
            if len > max {
                return Err(WireError::MessageTooLarge { tag, len, max });
            }
            if buf.len() - off < len {
                break;
            }
            let Some(expect) = front else {
                break;
            };
            match tag {
                // What `filter_server` forwards without the plan.
                be::NOTICE | be::NOTIFICATION => {}
                // The answer to the front Query or Sync ends the run; the caller notes its status.
                be::READY_FOR_QUERY if matches!(expect, Expect::Query | Expect::Sync) => {
                    if let Some(entry) = self.entries.pop_front() {
                        if entry.expect == Expect::Query {
                            self.copy_in = false;
                        }
                        self.settle(entry, Outcome::Done, client, Some(server));
                    }
                    let status = if len > HEADER_LEN {
                        buf[off + HEADER_LEN]
                    } else {
                        b'I'
                    };
                    return Ok(Run {
                        len: off + len,
                        ready: Some(status),
                    });
                }
                // What the relay or the plan must look at.
                be::READY_FOR_QUERY | be::ERROR | be::PARAMETER_STATUS => break,
                _ => match step(expect, tag) {
                    Step::More => {}
                    Step::Done => {
                        if let Some(entry) = self.entries.pop_front() {
                            if matches!(entry.expect, Expect::Execute | Expect::Query) {
                                self.copy_in = false;
                            }
                            self.settle(entry, Outcome::Done, client, Some(server));
                        }
                        front = self.forwarded_front();
                    }
                    Step::Described | Step::CopyIn | Step::Unexpected => break,
                },
            }
            off += len;
        }
        Ok(Run {
            len: off,
            ready: None,
        })
    }

    /// What the front request expects, if the server answers it and its answer reaches the
    /// client (not a request pgsplit answers itself or one whose answer it swallows).
    fn forwarded_front(&self) -> Option<Expect> {
        self.entries
            .front()
            .filter(|e| e.forward && !matches!(e.expect, Expect::Synthetic(_) | Expect::CopyEnd))
            .map(|e| e.expect)
    }

    /// Whether the client has an extended-protocol batch open (messages sent, Sync not yet):
    /// the server connection is mid-batch even when no response is due (a Flush-based client
    /// between its Describe and its Execute), so it cannot be given to anyone else.
    pub(crate) fn awaiting_sync(&self) -> bool {
        self.in_batch || self.skipping
    }

    /// Emits the synthetic responses that are due now, in order, settling their requests.
    ///
    /// [`filter_server`](super::filter_server) calls this itself; the relay must call it after
    /// [`rewrite_client`](super::rewrite_client), because a request answered by pgsplit whose
    /// predecessors are all answered gets no server message to ride on (a Parse of a prepared
    /// statement followed by Flush).
    pub(crate) fn emit_synthetic(
        &mut self,
        client: &mut ClientStatements,
        to_client: &mut Vec<Bytes>,
    ) {
        while let Some(front) = self.entries.front() {
            match front.expect {
                Expect::Synthetic(bytes) => {
                    to_client.push(Bytes::from_static(bytes));
                    if let Some(entry) = self.entries.pop_front() {
                        self.settle(entry, Outcome::Done, client, None);
                    }
                }
                // A CopyEnd at the front ends no COPY: the copy it ended is over.
                Expect::CopyEnd => {
                    self.entries.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Gives up on every request in flight (the server connection was lost and will be
    /// discarded), undoing the client registrations they made, so the client's statements are
    /// as the last answered request left them; a retry can then rewrite its messages afresh.
    pub(crate) fn abandon(&mut self, client: &mut ClientStatements) {
        while let Some(entry) = self.entries.pop_front() {
            self.settle(entry, Outcome::Skipped, client, None);
        }
        *self = ResponsePlan::default();
    }

    /// Whether the server is discarding messages until the next Sync.
    pub(super) fn skipping(&self) -> bool {
        self.skipping
    }

    /// The client sent an extended-protocol message: a batch is open until its Sync.
    pub(super) fn open_batch(&mut self) {
        self.in_batch = true;
    }

    /// The client sent Sync: it ends the batch and is answered by ReadyForQuery, unless the
    /// server is in COPY FROM STDIN, where it ignores Sync.
    pub(super) fn sync(&mut self) {
        if self.copy_in {
            return;
        }
        self.in_batch = false;
        self.skipping = false;
        self.push(Expect::Sync, true, Effect::None);
    }

    /// The client ended a COPY FROM STDIN (CopyDone or CopyFail).
    pub(super) fn copy_end(&mut self) {
        if self.copy_in {
            self.copy_in = false;
        } else if !self.entries.is_empty() {
            // The request that starts the copy may not be answered yet: mark where the copy
            // ends, so the Syncs before it can be unplanned once it starts.
            self.push(Expect::CopyEnd, true, Effect::None);
        }
    }

    /// Plans the answer to pgsplit's own simple Query sent behind the client's messages: kept
    /// from the client, its one value and its ReadyForQuery status end up in
    /// [`ResponsePlan::take_captured`].
    pub(crate) fn push_capture(&mut self) {
        self.capture_lsn = 0;
        self.capture_status = 0;
        self.push(Expect::Query, false, Effect::Capture);
    }

    /// The answer to the last [`push_capture`](ResponsePlan::push_capture), once complete:
    /// its value (`None` when it failed) and the transaction status it ended with.
    pub(crate) fn take_captured(&mut self) -> Option<(Option<Lsn>, u8)> {
        let status = std::mem::take(&mut self.capture_status);
        let lsn = std::mem::take(&mut self.capture_lsn);
        (status != 0).then_some(((lsn != 0).then_some(Lsn(lsn)), status))
    }

    /// Whether the ReadyForQuery just handled answered pgsplit's own query (then it answers no
    /// client unit); reading it clears it.
    pub(crate) fn take_internal_ready(&mut self) -> bool {
        std::mem::take(&mut self.internal_ready)
    }

    /// Plans a response.
    pub(super) fn push(&mut self, expect: Expect, forward: bool, effect: Effect) {
        self.entries.push_back(Entry {
            expect,
            forward,
            effect,
        });
    }

    /// Makes sure the server has `statement` before a message that uses it: touches it if the
    /// connection has it, else injects its Parse with the response swallowed.
    pub(super) fn ensure(
        &mut self,
        statement: &Statement,
        server: &mut StatementCache,
        to_server: &mut Vec<Bytes>,
    ) {
        if !server.touch(statement.id) {
            let effect = Effect::Prepare { id: statement.id };
            self.prepare(statement, server, to_server, false, effect);
        }
    }

    /// Sends the Parse of `statement`, preceded by the Close of the statement the cache evicts
    /// to make room (whose CloseComplete is swallowed).
    pub(super) fn prepare(
        &mut self,
        statement: &Statement,
        server: &mut StatementCache,
        to_server: &mut Vec<Bytes>,
        forward: bool,
        effect: Effect,
    ) {
        if let Some(evicted) = server.insert(statement.id) {
            let mut buf = BytesMut::with_capacity(HEADER_LEN + 2 + SERVER_PREFIX.len() + 16);
            encode::close(&mut buf, b'S', &server_name(evicted));
            to_server.push(buf.freeze());
            self.push(Expect::CloseComplete, false, Effect::Evict { id: evicted });
        }
        *self.preparing.entry(statement.id).or_default() += 1;
        to_server.push(statement.parse.clone());
        self.push(Expect::ParseComplete, forward, effect);
    }

    /// Applies what settling `entry` with `outcome` means to the registries. `server` is `None`
    /// when the entry cannot concern it (synthetic entries) or the connection is being dropped.
    fn settle(
        &mut self,
        entry: Entry,
        outcome: Outcome,
        client: &mut ClientStatements,
        server: Option<&mut StatementCache>,
    ) {
        let ok = outcome == Outcome::Done;
        match entry.effect {
            Effect::None | Effect::Capture => {}
            Effect::Client {
                name,
                ticket,
                parsed,
            } => {
                client.settle(&name, ticket, ok);
                if let Some(id) = parsed {
                    self.prepared(id, outcome, server);
                }
            }
            Effect::Prepare { id } => self.prepared(id, outcome, server),
            Effect::Evict { id } => {
                if let (false, Some(server)) = (ok, server) {
                    server.restore(id);
                }
            }
            Effect::Renamed { id, .. } => {
                // The server lost the statement (DISCARD ALL, DEALLOCATE ALL): forget it, so
                // the next use prepares it again.
                if let (Outcome::Failed(Some(SqlState::INVALID_SQL_STATEMENT_NAME)), Some(server)) =
                    (outcome, server)
                {
                    server.remove(id);
                }
            }
        }
    }

    /// Settles one Parse of statement `id` that was sent to the server.
    fn prepared(&mut self, id: u64, outcome: Outcome, server: Option<&mut StatementCache>) {
        let last = match self.preparing.get_mut(&id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                self.preparing.remove(&id);
                true
            }
        };
        // `42P05` means the server already had it, even though the cache did not know.
        let exists = matches!(
            outcome,
            Outcome::Done | Outcome::Failed(Some(SqlState::DUPLICATE_PREPARED_STATEMENT))
        );
        if let (false, true, Some(server)) = (exists, last, server) {
            server.remove(id);
        }
    }

    /// An ErrorResponse: it fails the front request and the server skips the rest of its batch,
    /// unless the front is a Query or Sync, which still end with ReadyForQuery.
    pub(super) fn fail(
        &mut self,
        frame: Frame,
        client: &mut ClientStatements,
        server: &mut StatementCache,
        to_client: &mut Vec<Bytes>,
    ) {
        let Some(front) = self.entries.front() else {
            // Not an answer to anything (a FATAL on an idle connection): just pass it on.
            to_client.push(frame.into_bytes());
            return;
        };
        if matches!(front.effect, Effect::Capture) {
            // pgsplit's own query failed: its ReadyForQuery still comes, and settles it.
            self.capture_lsn = 0;
            return;
        }
        if matches!(front.expect, Expect::Sync | Expect::Query) {
            to_client.push(frame.into_bytes());
            return;
        }
        let Some(entry) = self.entries.pop_front() else {
            return;
        };
        let code = server_msg::error_code(&frame);
        let respelled = match (&entry.effect, code) {
            (Effect::Renamed { id, name }, Some(SqlState::INVALID_SQL_STATEMENT_NAME)) => {
                respell_error(&frame, server_name(*id).as_bytes(), name)
            }
            _ => None,
        };
        to_client.push(respelled.unwrap_or_else(|| frame.into_bytes()));
        self.copy_in = false;
        self.settle(entry, Outcome::Failed(code), client, Some(server));
        while let Some(next) = self.entries.front() {
            if next.expect == Expect::Sync {
                return;
            }
            if let Some(skipped) = self.entries.pop_front() {
                self.settle(skipped, Outcome::Skipped, client, Some(server));
            }
        }
        self.skipping = true;
    }

    /// Any other message: it belongs to the front request, or it is out of step.
    pub(super) fn advance(
        &mut self,
        frame: Frame,
        client: &mut ClientStatements,
        server: &mut StatementCache,
        to_client: &mut Vec<Bytes>,
    ) -> Result<(), OutOfStep> {
        let tag = frame.tag();
        let Some(front) = self.entries.front_mut() else {
            to_client.push(frame.into_bytes());
            return Err(OutOfStep {
                tag,
                expected: None,
            });
        };
        let forward = front.forward;
        if matches!(front.effect, Effect::Capture) {
            if tag == be::DATA_ROW && self.capture_lsn == 0 {
                self.capture_lsn = first_text(frame.body())
                    .and_then(Lsn::parse)
                    .map_or(0, |lsn| lsn.0);
            } else if tag == be::READY_FOR_QUERY {
                self.capture_status = frame.body().first().copied().unwrap_or(b'I');
                self.internal_ready = true;
            }
        }
        match step(front.expect, tag) {
            Step::More => {}
            Step::Described => front.expect = Expect::ParametersDescribed,
            Step::CopyIn => self.enter_copy_in(),
            Step::Done => {
                if let Some(entry) = self.entries.pop_front() {
                    if matches!(entry.expect, Expect::Execute | Expect::Query) {
                        self.copy_in = false;
                    }
                    self.settle(entry, Outcome::Done, client, Some(server));
                }
            }
            Step::Unexpected => return Err(self.out_of_step(frame, client, server, to_client)),
        }
        if forward {
            to_client.push(frame.into_bytes());
        }
        Ok(())
    }

    /// The server entered COPY FROM STDIN for the front request. It ignores the Syncs the
    /// client sent since (libpq sends one after Execute and another after CopyDone), so those
    /// are unplanned up to where the client ended the copy; if it has not yet, Syncs are not
    /// planned until it does.
    fn enter_copy_in(&mut self) {
        let mut at = 1;
        let mut ended = false;
        while at < self.entries.len() {
            match self.entries[at].expect {
                Expect::Sync => {
                    self.entries.remove(at);
                }
                Expect::CopyEnd => {
                    self.entries.remove(at);
                    ended = true;
                    break;
                }
                _ => at += 1,
            }
        }
        self.copy_in = !ended;
        let extended = self.entries.front().map(|e| e.expect) == Some(Expect::Execute);
        if extended && !self.entries.iter().any(|e| e.expect == Expect::Sync) {
            self.in_batch = true;
        }
    }

    /// Forwards a message that fits no plan entry. A ReadyForQuery means the server finished a
    /// batch the plan thought unfinished: the plan skips to its next Sync or Query so later
    /// batches line up again.
    fn out_of_step(
        &mut self,
        frame: Frame,
        client: &mut ClientStatements,
        server: &mut StatementCache,
        to_client: &mut Vec<Bytes>,
    ) -> OutOfStep {
        let tag = frame.tag();
        let expected = self.entries.front().map(|e| e.expect.describe());
        to_client.push(frame.into_bytes());
        if tag == be::READY_FOR_QUERY {
            let ready = self
                .entries
                .iter()
                .position(|e| matches!(e.expect, Expect::Sync | Expect::Query));
            if let Some(ready) = ready {
                for at in 0..=ready {
                    let outcome = if at == ready {
                        Outcome::Done
                    } else {
                        Outcome::Skipped
                    };
                    if let Some(entry) = self.entries.pop_front() {
                        self.settle(entry, outcome, client, Some(server));
                    }
                }
            }
            self.copy_in = false;
        }
        OutOfStep { tag, expected }
    }
}
