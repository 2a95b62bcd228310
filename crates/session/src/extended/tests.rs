//! Tests of the statement mapping: client messages in, server bytes checked; server messages in,
//! client bytes checked against what PostgreSQL itself would have sent the client.

use pgsplit_wire::{ErrorFields, SqlState, next_frame};

use super::*;

const Q1: &str = "SELECT $1::int";
const Q2: &str = "SELECT 2";
const Q3: &str = "SELECT 3";

/// A client message, built with the wire encoders.
#[derive(Clone, Copy)]
enum Fe<'a> {
    Parse(&'a str, &'a str),
    Bind(&'a str, &'a str),
    BindValue(&'a str, &'a str, &'a [u8]),
    DescribeS(&'a str),
    DescribeP(&'a str),
    Execute(&'a str),
    CloseS(&'a str),
    CloseP(&'a str),
    Sync,
    Flush,
    Query(&'a str),
    CopyData(&'a [u8]),
    CopyDone,
}

/// A server message, built with the wire encoders.
#[derive(Clone, Copy)]
enum Be<'a> {
    ParseComplete,
    BindComplete,
    CloseComplete,
    Params(&'a [u32]),
    Rows,
    NoData,
    DataRow,
    Complete(&'a str),
    Suspended,
    Ready(u8),
    Error(SqlState, &'a str),
    Notice,
    Status,
    CopyIn,
    CopyOut,
    CopyData,
    CopyDone,
}

use Be as B;
use Fe as F;

fn fe(msgs: &[Fe<'_>]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for msg in msgs {
        match *msg {
            F::Parse(name, sql) => encode::parse(&mut b, name, sql, &[]),
            F::Bind(portal, name) => encode::bind(&mut b, portal, name, &[], &[], &[]),
            F::BindValue(portal, name, v) => {
                encode::bind(&mut b, portal, name, &[1], &[Some(v)], &[1])
            }
            F::DescribeS(name) => encode::describe(&mut b, b'S', name),
            F::DescribeP(name) => encode::describe(&mut b, b'P', name),
            F::Execute(portal) => encode::execute(&mut b, portal, 0),
            F::CloseS(name) => encode::close(&mut b, b'S', name),
            F::CloseP(name) => encode::close(&mut b, b'P', name),
            F::Sync => encode::sync(&mut b),
            F::Flush => encode::flush(&mut b),
            F::Query(sql) => encode::query(&mut b, sql),
            F::CopyData(data) => encode::copy_data(&mut b, data),
            F::CopyDone => encode::copy_done(&mut b),
        }
    }
    b.to_vec()
}

fn be(msgs: &[Be<'_>]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for msg in msgs {
        match *msg {
            B::ParseComplete => encode::parse_complete(&mut b),
            B::BindComplete => encode::bind_complete(&mut b),
            B::CloseComplete => encode::close_complete(&mut b),
            B::Params(types) => encode::parameter_description(&mut b, types),
            B::Rows => encode::row_description(&mut b, &[("x", 23)]),
            B::NoData => encode::no_data(&mut b),
            B::DataRow => encode::data_row(&mut b, &[Some(b"1")]),
            B::Complete(tag) => encode::command_complete(&mut b, tag),
            B::Suspended => encode::portal_suspended(&mut b),
            B::Ready(status) => encode::ready_for_query(&mut b, status),
            B::Error(code, msg) => encode::error_response(&mut b, &ErrorFields::error(code, msg)),
            B::Notice => {
                encode::notice_response(&mut b, &ErrorFields::notice(SqlState::WARNING, "careful"))
            }
            B::Status => encode::parameter_status(&mut b, "TimeZone", "UTC"),
            B::CopyIn => encode::copy_in_response(&mut b, 0, &[0]),
            B::CopyOut => encode::copy_out_response(&mut b, 0, &[0]),
            B::CopyData => encode::copy_data(&mut b, b"1\n"),
            B::CopyDone => encode::copy_done(&mut b),
        }
    }
    b.to_vec()
}

/// Splits a byte stream into its messages.
fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(frame) = next_frame(&mut buf, 1 << 20).expect("well-formed test input") {
        out.push(frame);
    }
    assert!(buf.is_empty(), "a test message is incomplete");
    out
}

/// One line per message (type and printable body), so a failing comparison reads well.
fn show(bytes: &[u8]) -> String {
    frames(bytes)
        .iter()
        .map(|f| {
            let body: String = f
                .body()
                .iter()
                .map(|&b| match b {
                    0 => '|',
                    b' '..=b'~' => char::from(b),
                    _ => '.',
                })
                .collect();
            format!("{} {body}\n", char::from(f.tag()))
        })
        .collect()
}

#[track_caller]
fn check(got: Vec<u8>, expected: Vec<u8>) {
    assert_eq!(show(&got), show(&expected));
    assert_eq!(got, expected);
}

/// The name pgsplit gives `sql` with parameter `types` on servers.
fn srv_typed(ids: &RandomState, sql: &str, types: &[u32]) -> String {
    let mut parse = BytesMut::new();
    encode::parse(&mut parse, "", sql, types);
    server_name(ids.hash_one(&parse[HEADER_LEN + 1..]))
}

fn srv(ids: &RandomState, sql: &str) -> String {
    srv_typed(ids, sql, &[])
}

fn id_of(name: &str) -> u64 {
    u64::from_str_radix(&name[SERVER_PREFIX.len()..], 16).expect("a server name")
}

/// One client session: its statements, its plan, and what it has been sent so far.
struct Client {
    statements: ClientStatements,
    plan: ResponsePlan,
    /// Bytes for the client not yet returned by `recv` (synthetic answers due at send time).
    out: Vec<Bytes>,
}

impl Client {
    fn new(ids: &RandomState) -> Self {
        Client {
            statements: ClientStatements::new(ids.clone()),
            plan: ResponsePlan::default(),
            out: Vec::new(),
        }
    }

    /// Rewrites client messages as the relay would; returns the bytes for the server.
    #[track_caller]
    fn send(&mut self, server: &mut StatementCache, msgs: &[Fe<'_>]) -> Vec<u8> {
        let mut to_server = Vec::new();
        for frame in frames(&fe(msgs)) {
            rewrite_client(
                frame,
                &mut self.statements,
                server,
                &mut self.plan,
                &mut to_server,
            )
            .expect("well-formed client message");
            self.plan
                .emit_synthetic(&mut self.statements, &mut self.out);
        }
        to_server.concat()
    }

    /// Filters server messages as the relay would; returns everything the client received
    /// since the last call. Every message must fit the plan.
    #[track_caller]
    fn recv(&mut self, server: &mut StatementCache, msgs: &[Be<'_>]) -> Vec<u8> {
        let (bytes, errors) = self.recv_raw(server, &be(msgs));
        assert_eq!(errors, []);
        bytes
    }

    fn recv_raw(&mut self, server: &mut StatementCache, bytes: &[u8]) -> (Vec<u8>, Vec<OutOfStep>) {
        let mut errors = Vec::new();
        for frame in frames(bytes) {
            let res = filter_server(
                frame,
                &mut self.statements,
                server,
                &mut self.plan,
                &mut self.out,
            );
            errors.extend(res.err());
        }
        (std::mem::take(&mut self.out).concat(), errors)
    }

    /// The server name client name `name` maps to now (settled or not).
    fn maps(&self, name: &str) -> Option<&str> {
        self.statements
            .get(name.as_bytes())
            .map(|s| s.server_name())
    }

    fn settled(&self, name: &str) -> Option<&str> {
        self.statements
            .committed
            .get(name.as_bytes())
            .map(|s| s.server_name())
    }

    /// Nothing due and no batch open: the connection could be given back.
    fn idle(&self) -> bool {
        self.plan.is_empty() && !self.plan.awaiting_sync()
    }
}

fn cached(server: &StatementCache) -> Vec<u64> {
    server.ids().collect()
}

/// A connection that already holds `sql`, prepared by a client `s` that has it settled.
fn prepared(ids: &RandomState, sql: &str) -> (Client, StatementCache) {
    let mut server = StatementCache::default();
    let mut c = Client::new(ids);
    c.send(&mut server, &[F::Parse("s", sql), F::Sync]);
    c.recv(&mut server, &[B::ParseComplete, B::Ready(b'I')]);
    assert!(c.idle());
    (c, server)
}

#[test]
fn synthetic_answers_are_what_the_encoders_write() {
    let (mut parse, mut close) = (BytesMut::new(), BytesMut::new());
    encode::parse_complete(&mut parse);
    encode::close_complete(&mut close);
    assert_eq!(PARSE_COMPLETE, &parse[..]);
    assert_eq!(CLOSE_COMPLETE, &close[..]);
}

#[test]
fn first_use_on_a_fresh_connection_sends_only_the_renamed_parse() {
    let ids = RandomState::new();
    let s1 = srv(&ids, Q1);
    let mut server = StatementCache::default();
    let mut c = Client::new(&ids);
    let sent = c.send(
        &mut server,
        &[
            F::Parse("s1", Q1),
            F::BindValue("", "s1", b"\0\0\0\x07"),
            F::Execute(""),
            F::Sync,
        ],
    );
    check(
        sent,
        fe(&[
            F::Parse(&s1, Q1),
            F::BindValue("", &s1, b"\0\0\0\x07"),
            F::Execute(""),
            F::Sync,
        ]),
    );
    assert!(
        !c.plan.is_empty() && !c.plan.awaiting_sync(),
        "answers due, batch closed"
    );
    let reply = [
        B::ParseComplete,
        B::BindComplete,
        B::DataRow,
        B::Complete("SELECT 1"),
        B::Ready(b'I'),
    ];
    check(c.recv(&mut server, &reply), be(&reply));
    assert!(c.idle());
    assert_eq!(c.settled("s1"), Some(s1.as_str()));
    assert_eq!(cached(&server), [id_of(&s1)]);
}

#[test]
fn another_connection_gets_the_parse_injected_and_its_answer_swallowed() {
    let ids = RandomState::new();
    let s1 = srv(&ids, Q1);
    let (mut c, _first) = prepared(&ids, Q1);
    let mut second = StatementCache::default();
    let sent = c.send(&mut second, &[F::Bind("", "s"), F::Execute(""), F::Sync]);
    check(
        sent,
        fe(&[F::Parse(&s1, Q1), F::Bind("", &s1), F::Execute(""), F::Sync]),
    );
    let got = c.recv(
        &mut second,
        &[
            B::ParseComplete,
            B::BindComplete,
            B::DataRow,
            B::Complete("SELECT 1"),
            B::Ready(b'I'),
        ],
    );
    check(
        got,
        be(&[
            B::BindComplete,
            B::DataRow,
            B::Complete("SELECT 1"),
            B::Ready(b'I'),
        ]),
    );
    assert_eq!(cached(&second), [id_of(&s1)]);
    // Once there, it is not prepared again.
    let sent = c.send(&mut second, &[F::DescribeS("s"), F::Sync]);
    check(sent, fe(&[F::DescribeS(&s1), F::Sync]));
    let reply = [B::Params(&[23]), B::Rows, B::Ready(b'I')];
    check(c.recv(&mut second, &reply), be(&reply));
}

#[test]
fn the_same_definition_from_two_clients_shares_one_server_statement() {
    let ids = RandomState::new();
    let s1 = srv(&ids, Q1);
    let (_a, mut server) = prepared(&ids, Q1);
    let mut b = Client::new(&ids);
    let sent = b.send(
        &mut server,
        &[
            F::Parse("t1", Q1),
            F::Bind("", "t1"),
            F::Execute(""),
            F::Sync,
        ],
    );
    check(sent, fe(&[F::Bind("", &s1), F::Execute(""), F::Sync]));
    let got = b.recv(
        &mut server,
        &[B::BindComplete, B::Complete("SELECT 1"), B::Ready(b'I')],
    );
    check(
        got,
        be(&[
            B::ParseComplete,
            B::BindComplete,
            B::Complete("SELECT 1"),
            B::Ready(b'I'),
        ]),
    );
    assert_eq!(b.settled("t1"), Some(s1.as_str()));
    assert_eq!(cached(&server), [id_of(&s1)]);
    // Parameter types are part of the definition.
    assert_ne!(srv_typed(&ids, Q1, &[23]), s1);
    assert_ne!(srv(&ids, Q2), s1);
    // Another process (another hasher key) names statements differently.
    assert_ne!(srv(&RandomState::new(), Q1), s1);
}

#[test]
fn flush_based_clients_get_each_answer_when_due() {
    let ids = RandomState::new();
    let s1 = srv(&ids, Q1);
    let mut server = StatementCache::default();
    let mut c = Client::new(&ids);
    let sent = c.send(
        &mut server,
        &[F::Parse("s1", Q1), F::DescribeS("s1"), F::Flush],
    );
    check(sent, fe(&[F::Parse(&s1, Q1), F::DescribeS(&s1), F::Flush]));
    let reply = [B::ParseComplete, B::Params(&[23]), B::Rows];
    check(c.recv(&mut server, &reply), be(&reply));
    assert!(
        c.plan.is_empty() && c.plan.awaiting_sync(),
        "mid-batch until Sync"
    );
    let sent = c.send(&mut server, &[F::Bind("", "s1"), F::Execute(""), F::Sync]);
    check(sent, fe(&[F::Bind("", &s1), F::Execute(""), F::Sync]));
    let reply = [
        B::BindComplete,
        B::DataRow,
        B::Complete("SELECT 1"),
        B::Ready(b'I'),
    ];
    check(c.recv(&mut server, &reply), be(&reply));
    assert!(c.idle());

    // On a connection that has it, the ParseComplete is due at once: nothing else will come.
    let mut d = Client::new(&ids);
    let sent = d.send(&mut server, &[F::Parse("d1", Q1), F::Flush]);
    check(sent, fe(&[F::Flush]));
    check(std::mem::take(&mut d.out).concat(), be(&[B::ParseComplete]));
    let sent = d.send(&mut server, &[F::DescribeS("d1"), F::Flush]);
    check(sent, fe(&[F::DescribeS(&s1), F::Flush]));
    let reply = [B::Params(&[23]), B::NoData];
    check(d.recv(&mut server, &reply), be(&reply));
    assert!(!d.idle());
    d.send(&mut server, &[F::Sync]);
    check(
        d.recv(&mut server, &[B::Ready(b'I')]),
        be(&[B::Ready(b'I')]),
    );
    assert!(d.idle());
}

#[test]
fn close_is_answered_by_pgsplit_and_the_server_statement_stays() {
    let ids = RandomState::new();
    let s1 = srv(&ids, Q1);
    let (mut c, mut server) = prepared(&ids, Q1);
    let sent = c.send(&mut server, &[F::CloseS("s"), F::Sync]);
    check(sent, fe(&[F::Sync]));
    // Nothing was in flight, so the CloseComplete is due at once.
    check(std::mem::take(&mut c.out).concat(), be(&[B::CloseComplete]));
    assert_eq!(c.maps("s"), None);
    check(
        c.recv(&mut server, &[B::Ready(b'I')]),
        be(&[B::Ready(b'I')]),
    );
    assert_eq!(cached(&server), [id_of(&s1)]);
    // The name is gone: PostgreSQL's own error, with the client's name, comes back unchanged.
    let sent = c.send(&mut server, &[F::Bind("", "s"), F::Sync]);
    check(sent, fe(&[F::Bind("", "s"), F::Sync]));
    let reply = [
        B::Error(
            SqlState::INVALID_SQL_STATEMENT_NAME,
            "prepared statement \"s\" does not exist",
        ),
        B::Ready(b'I'),
    ];
    check(c.recv(&mut server, &reply), be(&reply));
    // Preparing it again reuses the server statement.
    let sent = c.send(&mut server, &[F::Parse("s", Q1), F::Sync]);
    check(sent, fe(&[F::Sync]));
    check(
        c.recv(&mut server, &[B::Ready(b'I')]),
        be(&[B::ParseComplete, B::Ready(b'I')]),
    );
}

#[test]
fn close_then_parse_of_the_same_name_in_one_batch() {
    let ids = RandomState::new();
    let s2 = srv(&ids, Q2);
    let (mut c, mut server) = prepared(&ids, Q1);
    let sent = c.send(
        &mut server,
        &[
            F::CloseS("s"),
            F::Parse("s", Q2),
            F::Bind("", "s"),
            F::Execute(""),
            F::Sync,
        ],
    );
    check(
        sent,
        fe(&[F::Parse(&s2, Q2), F::Bind("", &s2), F::Execute(""), F::Sync]),
    );
    let got = c.recv(
        &mut server,
        &[
            B::ParseComplete,
            B::BindComplete,
            B::Complete("SELECT 1"),
            B::Ready(b'I'),
        ],
    );
    check(
        got,
        be(&[
            B::CloseComplete,
            B::ParseComplete,
            B::BindComplete,
            B::Complete("SELECT 1"),
            B::Ready(b'I'),
        ]),
    );
    assert_eq!(c.settled("s"), Some(s2.as_str()));
}

#[test]
fn redefining_a_name_replaces_the_mapping() {
    let ids = RandomState::new();
    let s2 = srv(&ids, Q2);
    let (mut c, mut server) = prepared(&ids, Q1);
    let sent = c.send(&mut server, &[F::Parse("s", Q2), F::Sync]);
    check(sent, fe(&[F::Parse(&s2, Q2), F::Sync]));
    let reply = [B::ParseComplete, B::Ready(b'I')];
    check(c.recv(&mut server, &reply), be(&reply));
    assert_eq!(c.settled("s"), Some(s2.as_str()));
    assert_eq!(cached(&server).len(), 2);
}

#[test]
fn an_error_mid_batch_rolls_back_and_drops_synthetic_answers() {
    let ids = RandomState::new();
    let (s1, s2) = (srv(&ids, Q1), srv(&ids, Q2));
    let (mut c, mut server) = prepared(&ids, Q3);
    // Another client prepared Q2 on this connection.
    c.send(
        &mut server,
        &[F::Parse("other", Q2), F::CloseS("other"), F::Sync],
    );
    c.recv(&mut server, &[B::ParseComplete, B::Ready(b'I')]);
    let sent = c.send(
        &mut server,
        &[
            F::Parse("s1", Q1),
            F::Bind("", "s1"),
            F::Execute(""),
            F::Parse("s2", Q2),
            F::CloseS("s"),
            F::Sync,
        ],
    );
    check(
        sent,
        fe(&[F::Parse(&s1, Q1), F::Bind("", &s1), F::Execute(""), F::Sync]),
    );
    assert_eq!(
        c.maps("s2"),
        Some(s2.as_str()),
        "registered while in flight"
    );
    let reply = [
        B::ParseComplete,
        B::BindComplete,
        B::Error(SqlState::DIVISION_BY_ZERO, "division by zero"),
        B::Ready(b'I'),
    ];
    check(c.recv(&mut server, &reply), be(&reply));
    assert!(c.idle());
    assert_eq!(c.settled("s1"), Some(s1.as_str()), "its Parse succeeded");
    assert_eq!(c.maps("s2"), None, "skipped by the server");
    assert_eq!(
        c.maps("s"),
        Some(srv(&ids, Q3).as_str()),
        "its Close was skipped"
    );
    assert!(server.contains(id_of(&s1)) && server.contains(id_of(&s2)));
}

#[test]
fn a_failed_parse_is_forgotten_by_client_and_connection() {
    let ids = RandomState::new();
    let bad = srv(&ids, "SELEC 1");
    let mut server = StatementCache::default();
    let mut c = Client::new(&ids);
    let sent = c.send(
        &mut server,
        &[
            F::Parse("s1", "SELEC 1"),
            F::Bind("", "s1"),
            F::Execute(""),
            F::Sync,
        ],
    );
    check(
        sent,
        fe(&[
            F::Parse(&bad, "SELEC 1"),
            F::Bind("", &bad),
            F::Execute(""),
            F::Sync,
        ]),
    );
    let reply = [
        B::Error(SqlState::SYNTAX_ERROR, "syntax error at or near \"SELEC\""),
        B::Ready(b'I'),
    ];
    check(c.recv(&mut server, &reply), be(&reply));
    assert_eq!(c.maps("s1"), None);
    assert!(server.is_empty());
    let sent = c.send(&mut server, &[F::Bind("", "s1"), F::Sync]);
    check(sent, fe(&[F::Bind("", "s1"), F::Sync]));
}

#[test]
fn a_failed_injected_parse_reaches_the_client_as_its_bind_error() {
    let ids = RandomState::new();
    let s1 = srv(&ids, Q1);
    let (mut c, _first) = prepared(&ids, Q1);
    let mut second = StatementCache::default();
    let sent = c.send(&mut second, &[F::Bind("", "s"), F::Execute(""), F::Sync]);
    check(
        sent,
        fe(&[F::Parse(&s1, Q1), F::Bind("", &s1), F::Execute(""), F::Sync]),
    );
    let reply = [
        B::Error(SqlState::UNDEFINED_TABLE, "relation \"t\" does not exist"),
        B::Ready(b'I'),
    ];
    check(c.recv(&mut second, &reply), be(&reply));
    assert!(second.is_empty());
    assert_eq!(
        c.settled("s"),
        Some(s1.as_str()),
        "the client's statement still exists"
    );
}

#[test]
fn eviction_closes_the_oldest_statement_and_swallows_its_answer() {
    let ids = RandomState::new();
    let (s1, s2) = (srv(&ids, Q1), srv(&ids, Q2));
    let mut server = StatementCache::with_capacity(1);
    let mut c = Client::new(&ids);
    c.send(&mut server, &[F::Parse("s1", Q1), F::Sync]);
    c.recv(&mut server, &[B::ParseComplete, B::Ready(b'I')]);
    let sent = c.send(
        &mut server,
        &[
            F::Parse("s2", Q2),
            F::Bind("", "s2"),
            F::Execute(""),
            F::Sync,
        ],
    );
    check(
        sent,
        fe(&[
            F::CloseS(&s1),
            F::Parse(&s2, Q2),
            F::Bind("", &s2),
            F::Execute(""),
            F::Sync,
        ]),
    );
    let got = c.recv(
        &mut server,
        &[
            B::CloseComplete,
            B::ParseComplete,
            B::BindComplete,
            B::Complete("SELECT 1"),
            B::Ready(b'I'),
        ],
    );
    check(
        got,
        be(&[
            B::ParseComplete,
            B::BindComplete,
            B::Complete("SELECT 1"),
            B::Ready(b'I'),
        ]),
    );
    assert_eq!(cached(&server), [id_of(&s2)]);
    // The evicted statement comes back on demand, evicting the other one.
    let sent = c.send(&mut server, &[F::Bind("", "s1"), F::Execute(""), F::Sync]);
    check(
        sent,
        fe(&[
            F::CloseS(&s2),
            F::Parse(&s1, Q1),
            F::Bind("", &s1),
            F::Execute(""),
            F::Sync,
        ]),
    );
    let got = c.recv(
        &mut server,
        &[
            B::CloseComplete,
            B::ParseComplete,
            B::BindComplete,
            B::Complete("SELECT 1"),
            B::Ready(b'I'),
        ],
    );
    check(
        got,
        be(&[B::BindComplete, B::Complete("SELECT 1"), B::Ready(b'I')]),
    );
    assert_eq!(cached(&server), [id_of(&s1)]);
}

#[test]
fn an_eviction_the_server_skipped_is_undone() {
    let ids = RandomState::new();
    let (s1, s2) = (srv(&ids, Q1), srv(&ids, Q2));
    let mut server = StatementCache::with_capacity(1);
    let mut c = Client::new(&ids);
    c.send(&mut server, &[F::Parse("s1", Q1), F::Sync]);
    c.recv(&mut server, &[B::ParseComplete, B::Ready(b'I')]);
    let sent = c.send(
        &mut server,
        &[
            F::Bind("", "s1"),
            F::Execute(""),
            F::Parse("s2", Q2),
            F::Sync,
        ],
    );
    check(
        sent,
        fe(&[
            F::Bind("", &s1),
            F::Execute(""),
            F::CloseS(&s1),
            F::Parse(&s2, Q2),
            F::Sync,
        ]),
    );
    let reply = [
        B::BindComplete,
        B::Error(SqlState::DIVISION_BY_ZERO, "division by zero"),
        B::Ready(b'I'),
    ];
    check(c.recv(&mut server, &reply), be(&reply));
    assert_eq!(cached(&server), [id_of(&s1)], "the Close never ran");
    assert_eq!(c.maps("s2"), None);
}

#[test]
fn pipelined_batches_are_answered_in_order() {
    let ids = RandomState::new();
    let s1 = srv(&ids, Q1);
    let mut server = StatementCache::default();
    let mut c = Client::new(&ids);
    let sent = c.send(
        &mut server,
        &[
            F::Parse("s1", Q1),
            F::Bind("", "s1"),
            F::Execute(""),
            F::Sync,
            F::Parse("s2", Q1),
            F::Bind("", "s2"),
            F::Execute(""),
            F::Sync,
        ],
    );
    check(
        sent,
        fe(&[
            F::Parse(&s1, Q1),
            F::Bind("", &s1),
            F::Execute(""),
            F::Sync,
            F::Bind("", &s1),
            F::Execute(""),
            F::Sync,
        ]),
    );
    assert!(c.out.is_empty(), "the second ParseComplete is not due yet");
    let got = c.recv(
        &mut server,
        &[
            B::ParseComplete,
            B::BindComplete,
            B::Error(SqlState::DIVISION_BY_ZERO, "division by zero"),
            B::Ready(b'I'),
        ],
    );
    check(
        got,
        be(&[
            B::ParseComplete,
            B::BindComplete,
            B::Error(SqlState::DIVISION_BY_ZERO, "division by zero"),
            B::Ready(b'I'),
            B::ParseComplete,
        ]),
    );
    let got = c.recv(
        &mut server,
        &[B::BindComplete, B::Complete("SELECT 1"), B::Ready(b'I')],
    );
    check(
        got,
        be(&[B::BindComplete, B::Complete("SELECT 1"), B::Ready(b'I')]),
    );
    assert!(c.idle());
    assert_eq!(c.settled("s1"), c.settled("s2"));
}

#[test]
fn unnamed_statements_and_portals_pass_through_untouched() {
    let ids = RandomState::new();
    let (mut c, mut server) = prepared(&ids, Q1);
    let msgs = [
        F::Parse("", Q2),
        F::Bind("p", ""),
        F::DescribeP("p"),
        F::DescribeS(""),
        F::Execute("p"),
        F::CloseP("p"),
        F::CloseS(""),
        F::CloseS("never_prepared"),
        F::DescribeS("never_prepared"),
        F::Flush,
        F::Sync,
    ];
    let input = frames(&fe(&msgs));
    let mut to_server = Vec::new();
    for frame in input.clone() {
        rewrite_client(
            frame,
            &mut c.statements,
            &mut server,
            &mut c.plan,
            &mut to_server,
        )
        .unwrap();
    }
    assert_eq!(to_server.len(), input.len());
    for (sent, original) in to_server.iter().zip(&input) {
        assert_eq!(sent.as_ptr(), original.as_bytes().as_ptr(), "not copied");
    }
    let reply = [
        B::ParseComplete,
        B::BindComplete,
        B::Rows,
        B::Params(&[]),
        B::NoData,
        B::DataRow,
        B::Complete("SELECT 1"),
        B::CloseComplete,
        B::CloseComplete,
        B::CloseComplete,
        B::Error(
            SqlState::INVALID_SQL_STATEMENT_NAME,
            "prepared statement \"never_prepared\" does not exist",
        ),
        B::Ready(b'I'),
    ];
    check(c.recv(&mut server, &reply), be(&reply));
    assert!(c.idle());
}

#[test]
fn large_binds_are_renamed_without_copying_their_parameters() {
    let ids = RandomState::new();
    let s1 = srv(&ids, Q1);
    let (mut c, mut server) = prepared(&ids, Q1);
    let value = vec![7u8; 4096];
    let input = frames(&fe(&[F::BindValue("p", "s", &value)]));
    let original = input[0].as_bytes().clone();
    let mut to_server = Vec::new();
    for frame in input {
        rewrite_client(
            frame,
            &mut c.statements,
            &mut server,
            &mut c.plan,
            &mut to_server,
        )
        .unwrap();
    }
    check(to_server.concat(), fe(&[F::BindValue("p", &s1, &value)]));
    assert_eq!(to_server.len(), 2);
    let tail = &to_server[1];
    assert_eq!(
        tail.as_ptr(),
        original[original.len() - tail.len()..].as_ptr()
    );
}

#[test]
fn notices_and_parameter_status_pass_through_anywhere() {
    let ids = RandomState::new();
    let (mut c, _first) = prepared(&ids, Q1);
    let mut second = StatementCache::default();
    c.send(&mut second, &[F::Bind("", "s"), F::Execute(""), F::Sync]);
    let got = c.recv(
        &mut second,
        &[
            B::Notice,
            B::ParseComplete,
            B::Status,
            B::BindComplete,
            B::Notice,
            B::Complete("SET"),
            B::Status,
            B::Ready(b'I'),
        ],
    );
    check(
        got,
        be(&[
            B::Notice,
            B::Status,
            B::BindComplete,
            B::Notice,
            B::Complete("SET"),
            B::Status,
            B::Ready(b'I'),
        ]),
    );
}

#[test]
fn an_error_before_sync_skips_what_the_client_sends_until_sync() {
    let ids = RandomState::new();
    let bad = srv(&ids, "SELEC 1");
    let mut server = StatementCache::default();
    let mut c = Client::new(&ids);
    let sent = c.send(
        &mut server,
        &[F::Parse("s1", "SELEC 1"), F::DescribeS("s1"), F::Flush],
    );
    check(
        sent,
        fe(&[F::Parse(&bad, "SELEC 1"), F::DescribeS(&bad), F::Flush]),
    );
    let err = [B::Error(SqlState::SYNTAX_ERROR, "syntax error")];
    check(c.recv(&mut server, &err), be(&err));
    assert!(c.plan.is_empty() && c.plan.awaiting_sync());
    assert_eq!(c.maps("s1"), None);
    // The server ignores these: they are forwarded as they are and nothing is planned for them.
    let msgs = [
        F::Parse("s1", Q1),
        F::Bind("", "s1"),
        F::Execute(""),
        F::CloseS("s1"),
    ];
    check(c.send(&mut server, &msgs), fe(&msgs));
    assert!(c.plan.is_empty() && c.maps("s1").is_none() && server.is_empty());
    check(c.send(&mut server, &[F::Sync]), fe(&[F::Sync]));
    check(
        c.recv(&mut server, &[B::Ready(b'I')]),
        be(&[B::Ready(b'I')]),
    );
    assert!(c.idle());
}

#[test]
fn simple_queries_produce_anything_up_to_ready_for_query() {
    let ids = RandomState::new();
    let mut server = StatementCache::default();
    let mut c = Client::new(&ids);
    let sent = c.send(
        &mut server,
        &[
            F::Query("SELECT 1; SELECT 1/0"),
            F::Query("COPY t TO STDOUT"),
        ],
    );
    check(
        sent,
        fe(&[
            F::Query("SELECT 1; SELECT 1/0"),
            F::Query("COPY t TO STDOUT"),
        ]),
    );
    let reply = [
        B::Rows,
        B::DataRow,
        B::Complete("SELECT 1"),
        B::Notice,
        B::Error(SqlState::DIVISION_BY_ZERO, "division by zero"),
        B::Ready(b'I'),
        B::CopyOut,
        B::CopyData,
        B::CopyDone,
        B::Complete("COPY 1"),
        B::Ready(b'I'),
    ];
    check(c.recv(&mut server, &reply), be(&reply));
    assert!(c.idle());
}

#[test]
fn copy_from_stdin_in_an_extended_batch_ignores_the_sync_sent_during_copy() {
    let ids = RandomState::new();
    let mut server = StatementCache::default();
    // libpq: the batch with its Sync, then the data after CopyInResponse, CopyDone and Sync.
    let mut c = Client::new(&ids);
    let batch = [
        F::Parse("", "COPY t FROM STDIN"),
        F::Bind("", ""),
        F::Execute(""),
        F::Sync,
    ];
    check(c.send(&mut server, &batch), fe(&batch));
    let reply = [B::ParseComplete, B::BindComplete, B::CopyIn];
    check(c.recv(&mut server, &reply), be(&reply));
    let data = [F::CopyData(b"1\n"), F::CopyDone, F::Sync];
    check(c.send(&mut server, &data), fe(&data));
    let reply = [B::Complete("COPY 1"), B::Ready(b'I')];
    check(c.recv(&mut server, &reply), be(&reply));
    assert!(c.idle());

    // The same with everything sent before the server answers.
    let mut c = Client::new(&ids);
    let all = [&batch[..], &data[..]].concat();
    check(c.send(&mut server, &all), fe(&all));
    let reply = [
        B::ParseComplete,
        B::BindComplete,
        B::CopyIn,
        B::Complete("COPY 1"),
        B::Ready(b'I'),
    ];
    check(c.recv(&mut server, &reply), be(&reply));
    assert!(c.idle());

    // A failed copy: the server skips to the Sync after CopyDone.
    let mut c = Client::new(&ids);
    check(c.send(&mut server, &batch), fe(&batch));
    let reply = [
        B::ParseComplete,
        B::BindComplete,
        B::CopyIn,
        B::Error(SqlState::BAD_COPY_FILE_FORMAT, "missing data for column"),
    ];
    check(c.recv(&mut server, &reply), be(&reply));
    check(c.send(&mut server, &data), fe(&data));
    check(
        c.recv(&mut server, &[B::Ready(b'I')]),
        be(&[B::Ready(b'I')]),
    );
    assert!(c.idle());
}

#[test]
fn execute_may_be_suspended_and_resumed() {
    let ids = RandomState::new();
    let s1 = srv(&ids, Q1);
    let (mut c, mut server) = prepared(&ids, Q1);
    let sent = c.send(&mut server, &[F::Bind("p", "s"), F::Execute("p"), F::Flush]);
    check(sent, fe(&[F::Bind("p", &s1), F::Execute("p"), F::Flush]));
    let reply = [B::BindComplete, B::DataRow, B::Suspended];
    check(c.recv(&mut server, &reply), be(&reply));
    c.send(&mut server, &[F::Execute("p"), F::Sync]);
    let reply = [B::DataRow, B::Complete("SELECT 2"), B::Ready(b'T')];
    check(c.recv(&mut server, &reply), be(&reply));
}

#[test]
fn a_statement_the_server_lost_is_forgotten_and_the_error_names_the_client_statement() {
    let ids = RandomState::new();
    let s1 = srv(&ids, Q1);
    let (mut c, mut server) = prepared(&ids, Q1);
    // Someone ran DISCARD ALL behind pgsplit's back.
    let sent = c.send(&mut server, &[F::Bind("", "s"), F::Execute(""), F::Sync]);
    check(sent, fe(&[F::Bind("", &s1), F::Execute(""), F::Sync]));
    let mut fields = ErrorFields::error(
        SqlState::INVALID_SQL_STATEMENT_NAME,
        format!("prepared statement \"{s1}\" does not exist"),
    );
    fields.other.push((b'R', "FetchPreparedStatement".into()));
    let mut lost = BytesMut::new();
    encode::error_response(&mut lost, &fields);
    encode::ready_for_query(&mut lost, b'I');
    let (got, errors) = c.recv_raw(&mut server, &lost);
    assert_eq!(errors, []);
    fields.message = "prepared statement \"s\" does not exist".into();
    let mut expected = BytesMut::new();
    encode::error_response(&mut expected, &fields);
    encode::ready_for_query(&mut expected, b'I');
    check(got, expected.to_vec());
    assert!(server.is_empty());
    // The next use prepares it again.
    let sent = c.send(&mut server, &[F::Bind("", "s"), F::Sync]);
    check(sent, fe(&[F::Parse(&s1, Q1), F::Bind("", &s1), F::Sync]));
}

#[test]
fn a_parse_the_server_already_had_keeps_it_cached() {
    let ids = RandomState::new();
    let s1 = srv(&ids, Q1);
    let mut server = StatementCache::default();
    let mut c = Client::new(&ids);
    c.send(&mut server, &[F::Parse("s1", Q1), F::Sync]);
    let msg = format!("prepared statement \"{s1}\" already exists");
    let reply = [
        B::Error(SqlState::DUPLICATE_PREPARED_STATEMENT, &msg),
        B::Ready(b'I'),
    ];
    check(c.recv(&mut server, &reply), be(&reply));
    assert_eq!(c.maps("s1"), None);
    assert_eq!(cached(&server), [id_of(&s1)]);
}

#[test]
fn messages_out_of_step_are_forwarded_and_reported() {
    let ids = RandomState::new();
    let mut server = StatementCache::default();
    let mut c = Client::new(&ids);
    let stray = be(&[B::BindComplete]);
    let (got, errors) = c.recv_raw(&mut server, &stray);
    check(got, stray);
    assert_eq!(
        errors,
        [OutOfStep {
            tag: b'2',
            expected: None
        }]
    );
    assert_eq!(
        errors[0].to_string(),
        "server sent '2' while no response was due"
    );

    c.send(
        &mut server,
        &[F::Parse("s1", Q1), F::Bind("", "s1"), F::Sync, F::Query(Q2)],
    );
    let wrong = be(&[B::Rows, B::Ready(b'I')]);
    let (got, errors) = c.recv_raw(&mut server, &wrong);
    check(got, wrong);
    assert_eq!(
        errors,
        [
            OutOfStep {
                tag: b'T',
                expected: Some("ParseComplete")
            },
            OutOfStep {
                tag: b'Z',
                expected: Some("ParseComplete")
            },
        ]
    );
    // The early ReadyForQuery re-synchronized on the Sync: the Query's answer lines up.
    assert_eq!(c.maps("s1"), None, "the Parse was never confirmed");
    let reply = [B::Complete("SELECT 1"), B::Ready(b'I')];
    check(c.recv(&mut server, &reply), be(&reply));
    assert!(c.idle());
}

#[test]
fn malformed_messages_are_protocol_violations() {
    let ids = RandomState::new();
    let mut server = StatementCache::default();
    let mut c = Client::new(&ids);
    let cases: [(&[u8], &str); 6] = [
        (
            b"P\0\0\0\x0bs1\0x\0\0\x01",
            "parameter type count does not match the body",
        ),
        (b"P\0\0\0\x08s1\0x", "missing query terminator"),
        (b"B\0\0\0\x08p\0s1", "missing statement name terminator"),
        (b"D\0\0\0\x08Xs1\0", "kind is neither 'S' nor 'P'"),
        (b"C\0\0\0\x04", "missing statement or portal kind"),
        (b"C\0\0\0\x09Ss1\0x", "trailing bytes after the name"),
    ];
    for (bytes, what) in cases {
        let frame = Frame::from_bytes(Bytes::from_static(bytes));
        let tag = frame.tag();
        let mut to_server = Vec::new();
        let res = rewrite_client(
            frame,
            &mut c.statements,
            &mut server,
            &mut c.plan,
            &mut to_server,
        );
        assert_eq!(res, Err(WireError::Malformed { tag, what }));
        assert!(to_server.is_empty());
    }
    assert!(c.plan.is_empty());
}

#[test]
fn abandoning_a_connection_undoes_unanswered_registrations() {
    let ids = RandomState::new();
    let s1 = srv(&ids, Q1);
    let (mut c, mut server) = prepared(&ids, Q1);
    c.send(&mut server, &[F::Parse("s2", Q2), F::CloseS("s"), F::Sync]);
    assert!(c.maps("s2").is_some());
    c.plan.abandon(&mut c.statements);
    assert!(c.idle());
    assert_eq!(c.maps("s2"), None);
    assert_eq!(c.settled("s"), Some(s1.as_str()));
    // A retry on another connection rewrites the same messages afresh.
    let mut other = StatementCache::default();
    let sent = c.send(&mut other, &[F::Parse("s2", Q2), F::Sync]);
    check(sent, fe(&[F::Parse(&srv(&ids, Q2), Q2), F::Sync]));
}

#[test]
fn clearing_forgets_every_name_and_late_answers_are_ignored() {
    let ids = RandomState::new();
    let (mut c, mut server) = prepared(&ids, Q1);
    c.send(&mut server, &[F::Parse("s2", Q2), F::Sync]);
    c.statements.clear();
    assert!(c.statements.is_empty() && c.maps("s2").is_none());
    let reply = [B::ParseComplete, B::Ready(b'I')];
    check(c.recv(&mut server, &reply), be(&reply));
    assert_eq!(c.statements.len(), 0);
}

/// A message built by hand, for bytes the encoders (which take `&str`) cannot express.
fn raw(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    message(tag, parts).to_vec()
}

#[test]
fn names_and_text_in_a_non_utf8_client_encoding_are_mapped_byte_for_byte() {
    let ids = RandomState::new();
    // LATIN1: 'é' is the single byte 0xE9, which is not UTF-8.
    let (name, sql): (&[u8], &[u8]) = (b"s\xe9", b"SELECT '\xe9'");
    let definition = [sql, b"\0\0\0"].concat();
    let s = server_name(ids.hash_one(&definition));
    let mut server = StatementCache::default();
    let mut c = Client::new(&ids);
    let mut to_server = Vec::new();
    let input = [
        raw(b'P', &[name, b"\0", &definition]),
        raw(b'B', &[b"\0", name, b"\0\0\0\0\0\0\0"]),
        raw(b'D', &[b"S", name, b"\0"]),
        raw(b'C', &[b"S", name, b"\0"]),
    ]
    .concat();
    for frame in frames(&input) {
        rewrite_client(
            frame,
            &mut c.statements,
            &mut server,
            &mut c.plan,
            &mut to_server,
        )
        .unwrap();
    }
    let expected = [
        raw(b'P', &[s.as_bytes(), b"\0", &definition]),
        raw(b'B', &[b"\0", s.as_bytes(), b"\0\0\0\0\0\0\0"]),
        raw(b'D', &[b"S", s.as_bytes(), b"\0"]),
    ]
    .concat();
    check(to_server.concat(), expected);
}
