//! Session microbenchmark: a server response relayed to the client through the relay's own
//! server path (`from_server`, reached by the hidden `pgsplit_session::bench::RelayBench`),
//! per message: framing, the response plan, state notes, queueing for the client.

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgsplit_session::bench::RelayBench;
use pgsplit_wire::{encode, next_frame};
use tokio::time::Instant;

/// Responses relayed per timed stretch (the requests they answer are recorded untimed first).
const CHUNK: u64 = 1024;

/// The server's answer to one `pgbench -S -M simple` transaction: 4 messages.
fn select_one_response() -> BytesMut {
    let mut buf = BytesMut::new();
    encode::row_description(&mut buf, &[("abalance", 23)]);
    encode::data_row(&mut buf, &[Some(b"-2374")]);
    encode::command_complete(&mut buf, "SELECT 1");
    encode::ready_for_query(&mut buf, b'I');
    buf
}

/// 100 pgbench_accounts rows: RowDescription, 100 DataRows, CommandComplete, ReadyForQuery.
fn hundred_rows_response() -> BytesMut {
    let mut buf = BytesMut::new();
    encode::row_description(
        &mut buf,
        &[("aid", 23), ("bid", 23), ("abalance", 23), ("filler", 1042)],
    );
    let filler = [b' '; 84];
    for aid in 1..=100u32 {
        let aid = aid.to_string();
        encode::data_row(
            &mut buf,
            &[
                Some(aid.as_bytes()),
                Some(b"1"),
                Some(b"0"),
                Some(&filler[..]),
            ],
        );
    }
    encode::command_complete(&mut buf, "SELECT 100");
    encode::ready_for_query(&mut buf, b'I');
    buf
}

fn benches(c: &mut Criterion) {
    let mut query = BytesMut::new();
    encode::query(
        &mut query,
        "SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
    );
    let query = next_frame(&mut query, 1 << 20).unwrap().unwrap();
    let mut group = c.benchmark_group("relay_from_server");
    for (name, messages, response) in [
        ("select_one_response_4_msgs", 4, select_one_response()),
        (
            "hundred_rows_response_103_msgs",
            103,
            hundred_rows_response(),
        ),
    ] {
        group.throughput(Throughput::Elements(messages));
        // One relay state for the whole bench, as one session keeps it: its buffers are warm.
        let mut relay = RelayBench::new();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    relay.expect(&query, n as usize).unwrap();
                    let mut reads: Vec<BytesMut> = (0..n).map(|_| response.clone()).collect();
                    let start = Instant::now();
                    for read in &mut reads {
                        black_box(relay.from_server(read).unwrap());
                    }
                    timed += start.elapsed();
                    assert!(relay.settled(), "every response was relayed");
                    assert!(reads.iter().all(|r| r.is_empty()));
                    relay.clear_client();
                    left -= n;
                }
                timed
            });
        });
    }
    group.finish();
}

criterion_group!(relay, benches);
criterion_main!(relay);
