//! Unit tests of `relay.rs`: server messages reaching the client, forward runs, small batches, unit timing,
//! and the write-position query sent behind a commit.

use super::*;
use pgsplit_wire::{ErrorFields, SqlState, encode};

/// A relay state and statement cache after the client sent the simple query `sql`.
fn after_query(sql: &str) -> (RelayState, StatementCache) {
    let mut st = RelayState::new(ClientStatements::new(Default::default()));
    let mut cache = StatementCache::default();
    let mut frame_buf = BytesMut::new();
    encode::query(&mut frame_buf, sql);
    let q = next_frame(&mut frame_buf, 1 << 20).unwrap().unwrap();
    let mut req = Vec::new();
    rewrite_client(q, &mut st.statements, &mut cache, &mut st.plan, &mut req).unwrap();
    (st, cache)
}

#[test]
fn fatal_detection() {
    let mut buf = BytesMut::new();
    encode::error_response(
        &mut buf,
        &ErrorFields::fatal(sqlstate::ADMIN_SHUTDOWN, "terminating connection"),
    );
    assert!(is_fatal(&buf[pgsplit_wire::frame::HEADER_LEN..]));
    buf.clear();
    encode::error_response(
        &mut buf,
        &ErrorFields::error(sqlstate::SYNTAX_ERROR, "oops"),
    );
    assert!(!is_fatal(&buf[pgsplit_wire::frame::HEADER_LEN..]));
}

#[test]
fn server_messages_update_state_and_reach_the_client() {
    let (mut st, mut cache) = after_query("select 1");
    let mut buf = BytesMut::new();
    encode::parameter_status(&mut buf, "application_name", "x");
    encode::command_complete(&mut buf, "SELECT 1");
    encode::ready_for_query(&mut buf, b'T');
    let whole = buf.len();
    encode::command_complete(&mut buf, "SELECT 2");
    buf.truncate(buf.len() - 2); // the last message is incomplete
    let mut out = Outbox::default();
    from_server(&mut buf, 1 << 20, &mut st, &mut cache, &mut out).unwrap();
    assert_eq!(out.len(), whole);
    assert_eq!(st.txn_status, b'T');
    assert_eq!(
        st.param_updates,
        vec![("application_name".into(), "x".into())]
    );
    assert!(st.plan.is_empty());
}

#[test]
fn row_runs_are_forwarded_whole_and_in_order() {
    let (mut st, mut cache) = after_query("select a from t");
    let mut buf = BytesMut::new();
    encode::row_description(&mut buf, &[("a", 25)]);
    for i in 0..100u32 {
        encode::data_row(&mut buf, &[Some(i.to_string().as_bytes())]);
    }
    encode::command_complete(&mut buf, "SELECT 100");
    encode::ready_for_query(&mut buf, b'I');
    let expected = buf.clone().freeze();
    encode::data_row(&mut buf, &[Some(b"partial")]);
    buf.truncate(buf.len() - 3);
    let mut out = Outbox::default();
    from_server(&mut buf, 1 << 20, &mut st, &mut cache, &mut out).unwrap();
    assert!(st.plan.is_empty(), "ReadyForQuery settled the query");
    assert_eq!(out.len(), expected.len());
    assert_eq!(buf.len(), 15, "the partial row stays buffered");
    let (statements, plan) = (&mut st.statements, &mut st.plan);
    assert_eq!(
        plan.forward_run(&buf, 1 << 20, statements, &mut cache)
            .unwrap()
            .len,
        0
    );
    let mut sink = Vec::new();
    block_on(out.flush(&mut sink)).unwrap();
    assert_eq!(sink, expected.to_vec());
}

#[test]
fn small_batches_go_out_as_one_chunk() {
    let mut joined = BytesMut::new();
    let parts = |sizes: &[usize]| -> Vec<Bytes> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Bytes::from(vec![i as u8; n]))
            .collect()
    };
    let flushed = |sizes: &[usize], joined: &mut BytesMut| {
        let mut out = Outbox::default();
        let mut batch = parts(sizes);
        flush_parts(&mut batch, joined, &mut out);
        assert!(batch.is_empty());
        let mut sink = Vec::new();
        let chunks = out.chunks();
        block_on(out.flush(&mut sink)).unwrap();
        let expected: Vec<u8> = parts(sizes).iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(sink, expected, "{sizes:?}");
        chunks
    };
    assert_eq!(flushed(&[10, 20, 30, 5, 6], &mut joined), 1);
    assert_eq!(flushed(&[10, 20, 30], &mut joined), 1, "reused buffer");
    assert_eq!(
        flushed(&[10, 20], &mut joined),
        2,
        "two parts stay as they are"
    );
    assert_eq!(
        flushed(&[10, 2000, 30], &mut joined),
        3,
        "big parts are not copied"
    );
    assert_eq!(flushed(&[], &mut joined), 0);
}

/// A relay state whose plan expects the answers to the client messages `client` writes.
fn planned(client: impl FnOnce(&mut BytesMut)) -> (RelayState, StatementCache) {
    let mut st = RelayState::new(ClientStatements::new(Default::default()));
    let mut cache = StatementCache::default();
    let mut buf = BytesMut::new();
    client(&mut buf);
    let mut req = Vec::new();
    while let Some(frame) = next_frame(&mut buf, 1 << 20).unwrap() {
        rewrite_client(
            frame,
            &mut st.statements,
            &mut cache,
            &mut st.plan,
            &mut req,
        )
        .unwrap();
    }
    (st, cache)
}

fn run(st: &mut RelayState, cache: &mut StatementCache, buf: &[u8]) -> usize {
    let (statements, plan) = (&mut st.statements, &mut st.plan);
    plan.forward_run(buf, 1 << 20, statements, cache)
        .unwrap()
        .len
}

#[test]
fn answers_run_up_to_what_the_session_must_see() {
    // A simple Query: everything up to its ReadyForQuery.
    let (mut st, mut cache) = planned(|b| encode::query(b, "select 1"));
    let mut buf = BytesMut::new();
    encode::row_description(&mut buf, &[("a", 25)]);
    encode::data_row(&mut buf, &[Some(b"1")]);
    encode::command_complete(&mut buf, "SELECT 1");
    encode::notice_response(
        &mut buf,
        &ErrorFields::notice(sqlstate::SUCCESSFUL_COMPLETION, "careful"),
    );
    encode::ready_for_query(&mut buf, b'T');
    let whole = buf.len();
    encode::data_row(&mut buf, &[Some(b"next")]);
    let (statements, plan) = (&mut st.statements, &mut st.plan);
    let found = plan
        .forward_run(&buf, 1 << 20, statements, &mut cache)
        .unwrap();
    assert_eq!(
        found.len, whole,
        "the run ends just after the ReadyForQuery"
    );
    assert_eq!(found.ready, Some(b'T'), "with its transaction status");
    assert!(st.plan.is_empty(), "the ReadyForQuery settled the query");

    // An extended batch of unnamed statements: up to the Sync's ReadyForQuery, the plan
    // settled request by request.
    let (mut st, mut cache) = planned(|b| {
        encode::parse(b, "", "select 1", &[]);
        encode::bind(b, "", "", &[], &[], &[]);
        encode::describe(b, b'P', "");
        encode::execute(b, "", 0);
        encode::sync(b);
    });
    let mut buf = BytesMut::new();
    encode::parse_complete(&mut buf);
    encode::bind_complete(&mut buf);
    encode::row_description(&mut buf, &[("a", 25)]);
    encode::data_row(&mut buf, &[Some(b"1")]);
    encode::command_complete(&mut buf, "SELECT 1");
    let body = buf.len();
    encode::ready_for_query(&mut buf, b'I');
    assert_eq!(run(&mut st, &mut cache, &buf[..body]), body);
    assert!(!st.plan.is_empty(), "the Sync is still due");
    let mut out = Outbox::default();
    let mut rest = BytesMut::from(&buf[body..]);
    from_server(&mut rest, 1 << 20, &mut st, &mut cache, &mut out).unwrap();
    assert!(st.plan.is_empty(), "the ReadyForQuery settled the Sync");
    assert_eq!(st.txn_status, b'I');

    // ParameterStatus and errors stop the run: the session must see them.
    for stop in [
        |b: &mut BytesMut| encode::parameter_status(b, "TimeZone", "UTC"),
        |b: &mut BytesMut| {
            encode::error_response(b, &ErrorFields::error(sqlstate::SYNTAX_ERROR, "no"))
        },
    ] {
        let (mut st, mut cache) = planned(|b| encode::query(b, "select 1"));
        let mut buf = BytesMut::new();
        encode::data_row(&mut buf, &[Some(b"1")]);
        let before = buf.len();
        stop(&mut buf);
        encode::command_complete(&mut buf, "SELECT 1");
        assert_eq!(run(&mut st, &mut cache, &buf), before);
    }

    // Nothing planned: nothing runs (the message goes to the out-of-step path).
    let (mut st, mut cache) = planned(|_| {});
    let mut buf = BytesMut::new();
    encode::command_complete(&mut buf, "SELECT 1");
    assert_eq!(run(&mut st, &mut cache, &buf), 0);

    // A bad length inside a run is an error, not a run.
    let (mut st, mut cache) = planned(|b| encode::query(b, "select 1"));
    buf[4] = 2;
    let (statements, plan) = (&mut st.statements, &mut st.plan);
    assert!(
        plan.forward_run(&buf, 1 << 20, statements, &mut cache)
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn each_unit_is_timed_until_its_ready_for_query() {
    let metrics = pgsplit_telemetry::Metrics::new();
    let h = metrics.query_duration("replica");
    let mut st = RelayState::new(ClientStatements::new(Default::default()));
    st.query_duration = Some(h.clone());
    let mut cache = StatementCache::default();
    let mut out = Outbox::default();
    // Two pipelined queries: the first answers after 10ms, the second 30ms later.
    for sql in ["select 1", "select 2"] {
        let mut frame_buf = BytesMut::new();
        encode::query(&mut frame_buf, sql);
        let q = next_frame(&mut frame_buf, 1 << 20).unwrap().unwrap();
        let mut req = Vec::new();
        rewrite_client(q, &mut st.statements, &mut cache, &mut st.plan, &mut req).unwrap();
        st.unit_sent();
    }
    let answer = |tag: &str| {
        let mut buf = BytesMut::new();
        encode::command_complete(&mut buf, tag);
        encode::ready_for_query(&mut buf, b'I');
        buf
    };
    // Each answer's time counts from the one before it (or the send), as the server works on
    // pipelined units one after the other.
    for (after_ms, count, sum) in [(10, 1, 0.010), (30, 2, 0.040)] {
        tokio::time::advance(Duration::from_millis(after_ms)).await;
        let mut buf = answer(&format!("SELECT {count}"));
        from_server(&mut buf, 1 << 20, &mut st, &mut cache, &mut out).unwrap();
        assert_eq!(h.get_sample_count(), count);
        assert!(
            (h.get_sample_sum() - sum).abs() < 1e-6,
            "{}",
            h.get_sample_sum()
        );
    }
    assert!(st.plan.is_empty() && st.unit_started.is_none());
    // Two transactions (each query on its own), timed the same way, for SHOW STATS.
    let counted = |st: &RelayState| {
        (
            st.work.queries,
            st.work.xacts,
            st.work.query_us,
            st.work.xact_us,
        )
    };
    assert_eq!(counted(&st), (2, 2, 40_000, 40_000));
    // A stray ReadyForQuery with nothing in flight counts nothing.
    tokio::time::advance(Duration::from_secs(5)).await;
    let mut buf = BytesMut::new();
    encode::ready_for_query(&mut buf, b'I');
    from_server(&mut buf, 1 << 20, &mut st, &mut cache, &mut out).unwrap();
    assert_eq!(h.get_sample_count(), 2);
    assert_eq!(metrics.query_duration("primary").get_sample_count(), 0);
    assert_eq!(counted(&st), (2, 2, 40_000, 40_000));
}

/// Runs a future that never waits (writing into a Vec) to completion.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(fut)
}

#[test]
fn oversized_and_undersized_lengths_are_errors() {
    let mut st = RelayState::new(ClientStatements::new(Default::default()));
    let mut cache = StatementCache::default();
    let mut out = Outbox::default();
    let mut huge = BytesMut::from(&[b'D', 0x7f, 0xff, 0xff, 0xff][..]);
    assert!(from_server(&mut huge, 1 << 20, &mut st, &mut cache, &mut out).is_err());
    let mut tiny = BytesMut::from(&[b'Z', 0, 0, 0, 3][..]);
    assert!(from_server(&mut tiny, 1 << 20, &mut st, &mut cache, &mut out).is_err());
}

/// A FATAL that follows the first messages of an answer in the same read, before any of it
/// reached the client, makes a retryable unit fail for a retry with nothing sent; once part of
/// the answer was sent, the FATAL is the client's.
#[test]
fn a_fatal_before_the_client_saw_anything_is_retried_unseen() {
    for sent_before in [false, true] {
        let (mut st, mut cache) = after_query("select a from t");
        st.retry_armed = true;
        let mut out = Outbox::default();
        let mut buf = BytesMut::new();
        if sent_before {
            encode::parameter_status(&mut buf, "application_name", "x");
            from_server(&mut buf, 1 << 20, &mut st, &mut cache, &mut out).unwrap();
            assert!(st.forwarded);
        }
        encode::row_description(&mut buf, &[("a", 25)]);
        encode::parameter_status(&mut buf, "TimeZone", "UTC");
        encode::error_response(
            &mut buf,
            &ErrorFields::fatal(sqlstate::ADMIN_SHUTDOWN, "terminating connection"),
        );
        let queued = out.len();
        from_server(&mut buf, 1 << 20, &mut st, &mut cache, &mut out).unwrap();
        assert!(st.server_fatal);
        if sent_before {
            assert!(!st.retry_failed, "part of the answer was sent: no retry");
            assert!(out.len() > queued, "the FATAL reaches the client");
        } else {
            assert!(st.retry_failed, "retried elsewhere");
            assert_eq!(out.len(), 0, "nothing of the answer is sent");
            assert!(st.param_updates.is_empty(), "values the client never saw");
        }
    }
}

// The write-position query sent behind a commit.

#[test]
fn the_capture_message_is_the_encoded_query() {
    let mut buf = BytesMut::new();
    encode::query(&mut buf, CAPTURE_SQL);
    assert_eq!(&buf[..], CAPTURE_QUERY);
}

#[test]
fn which_queries_leave_no_transaction_open() {
    assert!(ends_transaction(Some("UPDATE t SET x = 1"), b'I'));
    assert!(ends_transaction(Some("commit"), b'I'));
    assert!(!ends_transaction(Some("  begin;"), b'I'));
    assert!(!ends_transaction(Some("START TRANSACTION"), b'I'));
    assert!(ends_transaction(Some("END;"), b'T'));
    assert!(ends_transaction(Some("\nCOMMIT"), b'T'));
    assert!(!ends_transaction(Some("UPDATE t SET x = 1"), b'T'));
    assert!(!ends_transaction(Some("ROLLBACK"), b'E'));
    assert!(!ends_transaction(Some("committed_rows()"), b'T'));
    assert!(!ends_transaction(None, b'I'));
    assert!(!ends_transaction(Some("COPY t FROM STDIN"), b'I'));
    assert!(!ends_transaction(
        Some("insert into t values (1); copy t from stdin"),
        b'I'
    ));
}

/// A relay state after the client's `sql` went out with the capture query behind it, as
/// `from_client` sends them.
fn sent_with_capture(sql: &str) -> (RelayState, StatementCache) {
    let (mut state, cache) = after_query(sql);
    state.unit_sent();
    let mut to_server = Vec::new();
    state.send_capture(&mut to_server);
    assert_eq!(to_server, [Bytes::from_static(CAPTURE_QUERY)]);
    (state, cache)
}

/// The server's answer to `COMMIT`: what the client must receive, byte for byte.
fn commit_answer() -> BytesMut {
    let mut buf = BytesMut::new();
    encode::command_complete(&mut buf, "COMMIT");
    encode::ready_for_query(&mut buf, b'I');
    buf
}

/// The server's answer to the capture query: position `lsn`, then ReadyForQuery `status`.
fn capture_answer(server: &mut BytesMut, lsn: &[u8], status: u8) {
    encode::row_description(server, &[("pg_current_wal_insert_lsn", 3220)]);
    encode::data_row(server, &[Some(lsn)]);
    encode::command_complete(server, "SELECT 1");
    encode::ready_for_query(server, status);
}

fn relay_answer(state: &mut RelayState, cache: &mut StatementCache, server: &[u8]) -> Outbox {
    let mut buf = BytesMut::from(server);
    let mut to_client = Outbox::default();
    from_server(&mut buf, 1 << 20, state, cache, &mut to_client).unwrap();
    assert!(buf.is_empty());
    to_client
}

#[test]
fn the_captured_position_is_read_and_kept_from_the_client() {
    let (mut state, mut cache) = sent_with_capture("COMMIT");
    let mut server = commit_answer();
    capture_answer(&mut server, b"0/3000148", b'I');
    let to_client = relay_answer(&mut state, &mut cache, &server);
    // Only the commit's own answer reaches the client, and only one unit was answered.
    assert_eq!(to_client.len(), commit_answer().len());
    assert!(state.plan.is_empty());
    assert_eq!(state.units_in_flight, 0);
    assert_eq!(state.work.queries, 1);
    assert_eq!(state.txn_status, b'I');
    assert_eq!(state.take_capture(), Some(Some(Lsn(0x0300_0148))));
    assert_eq!(state.take_capture(), None);
}

#[test]
fn the_relay_waits_for_the_captured_answer_before_the_boundary() {
    let (mut state, mut cache) = sent_with_capture("COMMIT");
    let to_client = relay_answer(&mut state, &mut cache, &commit_answer());
    assert_eq!(to_client.len(), commit_answer().len());
    assert!(!state.plan.is_empty() && !state.idle());
    assert_eq!(state.take_capture(), None);
}

#[test]
fn a_failed_capture_is_kept_from_the_client_and_reported_as_no_position() {
    let (mut state, mut cache) = sent_with_capture("COMMIT");
    let mut server = commit_answer();
    encode::error_response(
        &mut server,
        &ErrorFields::error(SqlState::FEATURE_NOT_SUPPORTED, "no WAL here"),
    );
    encode::ready_for_query(&mut server, b'I');
    let to_client = relay_answer(&mut state, &mut cache, &server);
    assert_eq!(to_client.len(), commit_answer().len());
    assert!(state.plan.is_empty());
    assert_eq!(state.take_capture(), Some(None));
}

#[test]
fn a_capture_inside_a_transaction_or_before_another_unit_is_not_used() {
    let (mut state, mut cache) = sent_with_capture("UPDATE t SET x = 1");
    let mut server = BytesMut::new();
    encode::command_complete(&mut server, "UPDATE 1");
    encode::ready_for_query(&mut server, b'T');
    capture_answer(&mut server, b"0/1", b'T');
    relay_answer(&mut state, &mut cache, &server);
    assert_eq!(state.take_capture(), None, "ran inside the transaction");

    let (mut state, mut cache) = sent_with_capture("COMMIT");
    let mut server = commit_answer();
    capture_answer(&mut server, b"0/2", b'I');
    relay_answer(&mut state, &mut cache, &server);
    // The client pipelined another unit behind the commit: the position is older than it.
    state.unit_sent();
    assert_eq!(state.take_capture(), None, "a unit was sent after it");
}
