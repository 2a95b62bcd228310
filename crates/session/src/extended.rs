//! Protocol-level named prepared statements under transaction pooling: a client's statement
//! names are mapped to server statements that pgsplit creates on demand on whichever server
//! connection the client's next unit lands on.
//!
//! # Why
//!
//! A client that sends `Parse` named `s1` expects `Bind s1` to work for the rest of its session,
//! but in transaction pooling its next unit may run on another server connection, one that never
//! saw that Parse. So pgsplit owns the server-side names: a statement is prepared on a server
//! connection as `pgsplit_<16 hex digits>`, where the digits are a hash of its definition (SQL
//! text and parameter types). The same definition from any client therefore shares one server
//! statement per connection, and a connection prepares each definition at most once while it
//! stays in its [`StatementCache`].
//!
//! # How
//!
//! The module is sans-IO and works one complete message at a time:
//!
//! - [`rewrite_client`] turns each client message into what the server must receive: the
//!   original bytes when nothing needs changing (zero copy), a renamed Bind or Describe, a Parse
//!   injected before a Bind or Describe whose statement the connection lacks, a Close of the
//!   statement the cache evicted to make room, or nothing at all when pgsplit answers by itself
//!   (a Parse of a statement the connection already has, a Close of a client name).
//! - Every request that gets a response pushes an entry on the client's [`ResponsePlan`], in
//!   request order, saying which server message completes it and whether its responses reach the
//!   client (forwarded), are dropped (swallowed, for what pgsplit injected) or are made up by
//!   pgsplit (synthetic).
//! - [`filter_server`] walks server messages against that plan: it forwards, swallows, emits
//!   synthetic responses as soon as their turn comes, and settles each entry as done, failed
//!   (an ErrorResponse) or skipped (the server ignores everything up to Sync after an error in an
//!   extended-protocol message).
//!
//! Registrations are optimistic: a client's Parse or Close of a name, and a Parse sent to the
//! server, count for every message rewritten after them, because the server processes requests
//! in that order. The client's settled names change only when the request is answered (a Close
//! when its synthetic CloseComplete is emitted, never before, because an earlier error would
//! make PostgreSQL skip it); a failure or a skip drops the request and takes its id back out of
//! the cache.
//!
//! # Differences from PostgreSQL, on purpose
//!
//! - A Parse for a name the client already has replaces the mapping; PostgreSQL would answer
//!   `42P05 prepared statement "s1" already exists`. Clients that Close before re-using a name
//!   (all drivers do) see no difference.
//! - A Parse of a definition the connection already holds is answered by pgsplit, so errors that
//!   PostgreSQL would raise at Parse time without looking at the text (`25P02` inside an aborted
//!   transaction) surface at the following Bind instead.
//! - Within one pipeline, later batches are rewritten before earlier ones are answered. If an
//!   earlier Parse fails, a later Bind of the same name reaches the server under pgsplit's name
//!   and fails with `26000`; the error is given back with the client's name in its message, as
//!   PostgreSQL would have written it.
//! - An evicted statement is closed on the server; PostgreSQL drops the portals built from a
//!   statement it closes, so a named portal left suspended while more than the cache's capacity
//!   of other statements are prepared in the same transaction is lost.
//! - If something drops server statements behind pgsplit's back (`DISCARD ALL`,
//!   `DEALLOCATE ALL`), the first Bind that needed one fails with `26000` and the cache forgets
//!   it, so the next attempt prepares it again. Callers that run such commands should clear the
//!   cache instead.
//!
//! # Invariants
//!
//! - Every byte the client receives is either a server message forwarded unchanged, a `26000`
//!   ErrorResponse re-spelled with the client's statement name, or a synthetic ParseComplete or
//!   CloseComplete emitted exactly where PostgreSQL would have sent its own.
//! - Unnamed statements, portals, and names the client never prepared are never rewritten.
//! - Nothing here panics on what a server or client sends: a message that does not fit the plan
//!   is forwarded and reported as [`OutOfStep`].
//!
//! # Wiring
//!
//! The relay calls [`rewrite_client`] for each complete client message and then
//! [`ResponsePlan::emit_synthetic`] (a Parse or Close answered by pgsplit may be due before the
//! server sends anything, e.g. for Flush-based clients), and [`filter_server`] for each complete
//! server message. A server connection may be given back only when [`ResponsePlan::is_empty`]
//! and not [`ResponsePlan::awaiting_sync`]; a connection lost mid-unit is given up with
//! [`ResponsePlan::abandon`].

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
// Seeded per map: a client can only collide names in its own session's map.
use bytes::{BufMut, Bytes, BytesMut};
use foldhash::{HashMap, HashMapExt};
use pgsplit_backend::StatementCache;
use pgsplit_classify::{Classification, Effects, session_effects};
use pgsplit_wire::backend::tags as be;
use pgsplit_wire::frame::HEADER_LEN;
use pgsplit_wire::frontend::tags as fe;
use pgsplit_wire::{Frame, WireError, encode};

use message::{BindParts, message, put_header, split_bind, split_parse, split_target};
use plan::{Effect, Expect};
pub(crate) use plan::{OutOfStep, ResponsePlan};

mod message;
mod plan;
#[cfg(test)]
mod tests;

/// Prefix of every server statement name pgsplit creates.
const SERVER_PREFIX: &str = "pgsplit_";

/// ParseComplete, as PostgreSQL sends it.
const PARSE_COMPLETE: &[u8] = b"1\0\0\0\x04";

/// CloseComplete, as PostgreSQL sends it.
const CLOSE_COMPLETE: &[u8] = b"3\0\0\0\x04";

/// Bind parameters up to this size are copied into the renamed Bind; larger ones are sent as a
/// zero-copy slice of the client's message after a new head.
const COPY_LIMIT: usize = 512;

/// A client statement name, as raw bytes: names are in the client's encoding, which need not be
/// UTF-8.
type Name = Box<[u8]>;

/// A client's protocol-level named statements (name → statement).
///
/// Unnamed (`""`) statements are not mapped and pass through untouched: drivers send the
/// unnamed Parse in the same batch as the Binds that use it, so it never has to outlive a change
/// of server connection.
#[derive(Debug)]
pub(crate) struct ClientStatements {
    /// Keyed hasher turning definitions into statement ids. Every session must get a clone of
    /// one process-wide instance, so that equal definitions from different clients share a
    /// server statement; the random key keeps clients from crafting two definitions with the
    /// same id (which would make another client run the wrong statement).
    ids: RandomState,
    /// Names whose Parse the server confirmed (or pgsplit answered) and whose Close has not been
    /// answered.
    committed: HashMap<Name, Arc<Statement>>,
    /// Parse (`Some`) and Close (`None`) requests per name that are not answered yet, in
    /// request order; the newest one is what a message rewritten now refers to.
    pending: HashMap<Name, VecDeque<PendingName>>,
    /// Source of the tickets that tie plan entries to `pending` requests.
    next_ticket: u64,
}

/// One unanswered Parse or Close of a client name.
#[derive(Debug)]
struct PendingName {
    /// Matches the plan entry that settles this request.
    ticket: u64,
    /// What the name maps to once the request succeeds (`None`: a Close).
    statement: Option<Arc<Statement>>,
}

/// A statement as pgsplit prepares it on servers.
#[derive(Debug)]
pub(crate) struct Statement {
    /// Hash of the definition (SQL text and parameter type OIDs): the same definition from any
    /// client shares one server statement.
    id: u64,
    /// `pgsplit_` and the id in 16 hex digits.
    server_name: String,
    /// A complete Parse message preparing the definition as `server_name`, built once and
    /// re-sent (zero copy) to every connection that lacks it.
    parse: Bytes,
    /// What executing the statement may do to session state, from its SQL: noted at every
    /// Bind, since a statement prepared in one unit may run in another.
    pub(crate) effects: Effects,
    /// The routing verdict for the statement's SQL, computed once per config generation (at
    /// its first routing, normally the unit of its Parse) and reused by every Bind.
    class: ArcSwapOption<(u64, Arc<Classification>)>,
}

impl Statement {
    /// A statement for the Parse body `definition` (everything after the client's name).
    fn new(id: u64, definition: &[u8]) -> Self {
        let server_name = server_name(id);
        let parse = message(fe::PARSE, &[server_name.as_bytes(), b"\0", definition]);
        let sql_end = definition
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(definition.len());
        let effects = std::str::from_utf8(&definition[..sql_end])
            .map(session_effects)
            // Text pgsplit cannot read may do anything: check after it runs.
            .unwrap_or(Effects {
                settings: true,
                state: true,
                statements: true,
                unpins: true,
            });
        Statement {
            id,
            server_name,
            parse,
            effects,
            class: ArcSwapOption::empty(),
        }
    }

    /// The statement's SQL text, if it is UTF-8.
    pub(crate) fn sql(&self) -> Option<&str> {
        let definition = self.parse.get(HEADER_LEN + self.server_name.len() + 1..)?;
        let end = definition.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&definition[..end]).ok()
    }

    /// The routing verdict for this statement under config `generation`, classified with
    /// `classify` the first time it is asked for in that generation.
    pub(crate) fn classification(
        &self,
        generation: u64,
        classify: impl FnOnce(Option<&str>) -> Arc<Classification>,
    ) -> Arc<Classification> {
        if let Some(known) = self.class.load().as_ref()
            && known.0 == generation
        {
            return Arc::clone(&known.1);
        }
        let verdict = classify(self.sql());
        self.class
            .store(Some(Arc::new((generation, Arc::clone(&verdict)))));
        verdict
    }

    /// The name the statement has on servers.
    #[cfg(test)]
    pub(crate) fn server_name(&self) -> &str {
        &self.server_name
    }
}

impl ClientStatements {
    /// No statements yet; `ids` must be a clone of the process-wide hasher (see the field).
    pub(crate) fn new(ids: RandomState) -> Self {
        ClientStatements {
            ids,
            committed: HashMap::new(),
            pending: HashMap::new(),
            next_ticket: 0,
        }
    }

    /// The statement `name` refers to for a message rewritten now: the newest unanswered Parse
    /// or Close of that name wins over the settled mapping.
    pub(crate) fn get(&self, name: &[u8]) -> Option<&Arc<Statement>> {
        // Nearly always nothing is pending (every Parse and Close answered): one lookup.
        if self.pending.is_empty() {
            return self.committed.get(name);
        }
        match self.pending.get(name).and_then(VecDeque::back) {
            Some(pending) => pending.statement.as_ref(),
            None => self.committed.get(name),
        }
    }

    /// Number of settled names.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.committed.len()
    }

    /// Whether the client has no settled names.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.committed.is_empty()
    }

    /// Forgets every name, for when the client deallocated all its statements
    /// (`DISCARD ALL`, `DEALLOCATE ALL`). Answers still due for forgotten requests are ignored.
    pub(crate) fn clear(&mut self) {
        self.committed.clear();
        self.pending.clear();
    }

    /// The statement a Parse of `definition` under `name` prepares: the one `name` already
    /// refers to when the definition is the same, else a new one.
    fn statement_for(&self, name: &[u8], definition: &[u8]) -> Arc<Statement> {
        let id = self.ids.hash_one(definition);
        match self.get(name) {
            Some(same) if same.id == id => Arc::clone(same),
            _ => Arc::new(Statement::new(id, definition)),
        }
    }

    /// Records an unanswered Parse (`Some`) or Close (`None`) of `name`; returns its ticket.
    fn stage(&mut self, name: &[u8], statement: Option<Arc<Statement>>) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let pending = PendingName { ticket, statement };
        self.pending
            .entry(name.into())
            .or_default()
            .push_back(pending);
        ticket
    }

    /// Settles the request `ticket` on `name`: applied if the server (or pgsplit) answered it
    /// successfully, dropped otherwise.
    fn settle(&mut self, name: &[u8], ticket: u64, ok: bool) {
        let Some(queue) = self.pending.get_mut(name) else {
            return; // `clear` ran in between.
        };
        // Answers come in request order, so this is the front unless `clear` intervened.
        let Some(request) = queue
            .iter()
            .position(|p| p.ticket == ticket)
            .and_then(|at| queue.remove(at))
        else {
            return;
        };
        if queue.is_empty() {
            self.pending.remove(name);
        }
        if ok {
            match request.statement {
                Some(statement) => {
                    self.committed.insert(name.into(), statement);
                }
                None => {
                    self.committed.remove(name);
                }
            }
        }
    }
}

/// Rewrites one complete client message, appending what the server must receive to
/// `to_server` and planning the responses.
///
/// Messages that need no change are appended as their original bytes. A Parse or Close that
/// pgsplit answers itself appends nothing; call [`ResponsePlan::emit_synthetic`] afterwards.
///
/// # Errors
///
/// A Parse, Bind, Describe or Close too malformed to find its names in is a protocol violation
/// (`WireError::Malformed`), which the relay reports to the client as PostgreSQL would (FATAL
/// `08P01`). Other messages are not inspected.
pub(crate) fn rewrite_client(
    frame: Frame,
    client: &mut ClientStatements,
    server: &mut StatementCache,
    plan: &mut ResponsePlan,
    to_server: &mut Vec<Bytes>,
) -> Result<(), WireError> {
    let tag = frame.tag();
    if plan.skipping() && tag != fe::SYNC {
        // The server discards everything up to the next Sync: nothing sent now is answered or
        // takes effect, so nothing is planned or registered either.
        to_server.push(frame.into_bytes());
        return Ok(());
    }
    match tag {
        fe::PARSE => return rewrite_parse(frame, client, server, plan, to_server),
        fe::BIND => return rewrite_bind(frame, client, server, plan, to_server),
        fe::DESCRIBE => return rewrite_describe(frame, client, server, plan, to_server),
        fe::CLOSE => return rewrite_close(frame, client, plan, to_server),
        fe::EXECUTE => {
            plan.open_batch();
            plan.push(Expect::Execute, true, Effect::None);
        }
        fe::SYNC => plan.sync(),
        fe::QUERY | fe::FUNCTION_CALL => plan.push(Expect::Query, true, Effect::None),
        fe::COPY_DONE | fe::COPY_FAIL => plan.copy_end(),
        // Flush, CopyData, Terminate and anything unknown get no response of their own.
        _ => {}
    }
    to_server.push(frame.into_bytes());
    Ok(())
}

/// Parse: named statements are mapped to a server statement, answered by pgsplit when the
/// connection already has it.
fn rewrite_parse(
    frame: Frame,
    client: &mut ClientStatements,
    server: &mut StatementCache,
    plan: &mut ResponsePlan,
    to_server: &mut Vec<Bytes>,
) -> Result<(), WireError> {
    plan.open_batch();
    let (name, definition) = split_parse(frame.body())?;
    if name.is_empty() {
        plan.push(Expect::ParseComplete, true, Effect::None);
        to_server.push(frame.into_bytes());
        return Ok(());
    }
    let statement = client.statement_for(name, definition);
    let id = statement.id;
    let ticket = client.stage(name, Some(Arc::clone(&statement)));
    let name = Name::from(name);
    if server.touch(id) {
        let effect = Effect::Client {
            name,
            ticket,
            parsed: None,
        };
        plan.push(Expect::Synthetic(PARSE_COMPLETE), true, effect);
    } else {
        let effect = Effect::Client {
            name,
            ticket,
            parsed: Some(id),
        };
        plan.prepare(&statement, server, to_server, true, effect);
    }
    Ok(())
}

/// Records a named Parse as prepared without sending it anywhere: the statement is prepared
/// on a server connection when first bound or described (as for any connection that lacks it).
///
/// Used for a unit made only of named Parses and a Sync outside a transaction (what
/// `PQprepare` sends), which pgsplit answers itself. That unit then needs no server
/// connection, so a client preparing while others hold every pooled connection cannot
/// deadlock a client program that drives several connections from one thread (pgbench
/// `-M prepared`). The price: an error in such a Parse (a syntax error, an unknown table) is
/// reported at the statement's first Bind or Describe instead.
///
/// Returns `Ok(false)` for anything but a named Parse.
pub(crate) fn prepare_locally(
    frame: &Frame,
    client: &mut ClientStatements,
) -> Result<bool, WireError> {
    if frame.tag() != fe::PARSE {
        return Ok(false);
    }
    let (name, definition) = split_parse(frame.body())?;
    if name.is_empty() {
        return Ok(false);
    }
    let statement = client.statement_for(name, definition);
    let ticket = client.stage(name, Some(statement));
    client.settle(name, ticket, true);
    Ok(true)
}

/// Bind: a mapped statement name is replaced by the server's, after making sure the
/// connection has the statement; every other byte is copied unchanged.
fn rewrite_bind(
    frame: Frame,
    client: &mut ClientStatements,
    server: &mut StatementCache,
    plan: &mut ResponsePlan,
    to_server: &mut Vec<Bytes>,
) -> Result<(), WireError> {
    plan.open_batch();
    let BindParts {
        portal,
        statement: name,
        params,
    } = split_bind(frame.body())?;
    let Some(statement) = client.get(name).cloned() else {
        plan.push(Expect::BindComplete, true, Effect::None);
        to_server.push(frame.into_bytes());
        return Ok(());
    };
    plan.ensure(&statement, server, to_server);
    let effect = Effect::Renamed {
        id: statement.id,
        name: Name::from(name),
    };
    let head: [&[u8]; 4] = [portal, b"\0", statement.server_name.as_bytes(), b"\0"];
    if params.len() <= COPY_LIMIT {
        let mut parts = head.to_vec();
        parts.push(params);
        to_server.push(message(fe::BIND, &parts));
    } else {
        let body_len = head.iter().map(|p| p.len()).sum::<usize>() + params.len();
        let mut buf = BytesMut::with_capacity(HEADER_LEN + body_len - params.len());
        put_header(&mut buf, fe::BIND, body_len);
        head.iter().for_each(|part| buf.put_slice(part));
        to_server.push(buf.freeze());
        let at = frame.len() - params.len();
        to_server.push(frame.into_bytes().slice(at..));
    }
    plan.push(Expect::BindComplete, true, effect);
    Ok(())
}

/// Describe: a statement Describe of a mapped name is renamed like Bind.
fn rewrite_describe(
    frame: Frame,
    client: &mut ClientStatements,
    server: &mut StatementCache,
    plan: &mut ResponsePlan,
    to_server: &mut Vec<Bytes>,
) -> Result<(), WireError> {
    plan.open_batch();
    let (kind, name) = split_target(fe::DESCRIBE, frame.body())?;
    let statement = match kind {
        b'S' => client.get(name).cloned(),
        _ => None,
    };
    let Some(statement) = statement else {
        let expect = match kind {
            b'S' => Expect::StatementDescription,
            _ => Expect::PortalDescription,
        };
        plan.push(expect, true, Effect::None);
        to_server.push(frame.into_bytes());
        return Ok(());
    };
    plan.ensure(&statement, server, to_server);
    let mut buf = BytesMut::with_capacity(HEADER_LEN + 2 + statement.server_name.len());
    encode::describe(&mut buf, b'S', &statement.server_name);
    to_server.push(buf.freeze());
    let effect = Effect::Renamed {
        id: statement.id,
        name: Name::from(name),
    };
    plan.push(Expect::StatementDescription, true, effect);
    Ok(())
}

/// Close: closing a mapped name is answered by pgsplit and the server statement stays for
/// reuse; anything else (portals, the unnamed statement, names the client never prepared, which
/// may be SQL-level statements) goes to the server.
fn rewrite_close(
    frame: Frame,
    client: &mut ClientStatements,
    plan: &mut ResponsePlan,
    to_server: &mut Vec<Bytes>,
) -> Result<(), WireError> {
    plan.open_batch();
    let (kind, name) = split_target(fe::CLOSE, frame.body())?;
    if kind == b'S' && client.get(name).is_some() {
        let ticket = client.stage(name, None);
        let effect = Effect::Client {
            name: Name::from(name),
            ticket,
            parsed: None,
        };
        plan.push(Expect::Synthetic(CLOSE_COMPLETE), true, effect);
        return Ok(());
    }
    plan.push(Expect::CloseComplete, true, Effect::None);
    to_server.push(frame.into_bytes());
    Ok(())
}

/// Filters one complete server message: appends what the client must see to `to_client`
/// (synthetic responses first when they are due, then the message unless it answers something
/// pgsplit injected), and settles the requests it answers.
///
/// NoticeResponse, ParameterStatus and NotificationResponse may come at any time and are
/// always forwarded.
///
/// # Errors
///
/// [`OutOfStep`] when the message fits no planned response; it has been forwarded anyway.
pub(crate) fn filter_server(
    frame: Frame,
    client: &mut ClientStatements,
    server: &mut StatementCache,
    plan: &mut ResponsePlan,
    to_client: &mut Vec<Bytes>,
) -> Result<(), OutOfStep> {
    plan.emit_synthetic(client, to_client);
    let result = match frame.tag() {
        be::NOTICE | be::PARAMETER_STATUS | be::NOTIFICATION => {
            to_client.push(frame.into_bytes());
            Ok(())
        }
        be::ERROR => {
            plan.fail(frame, client, server, to_client);
            Ok(())
        }
        _ => plan.advance(frame, client, server, to_client),
    };
    plan.emit_synthetic(client, to_client);
    result
}

/// The name statement `id` has on servers.
fn server_name(id: u64) -> String {
    format!("{SERVER_PREFIX}{id:016x}")
}
