//! Wire microbenchmark: `next_frame` splitting typical query responses (RowDescription,
//! DataRows, CommandComplete, ReadyForQuery) off a read buffer.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pgsplit_wire::{encode, next_frame};

/// The default `limits.max_message_size`.
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// What the server sends for one `pgbench -S` transaction (`SELECT abalance FROM
/// pgbench_accounts WHERE aid = $1`): 4 messages, 63 bytes.
fn select_one_response() -> BytesMut {
    let mut buf = BytesMut::new();
    encode::row_description(&mut buf, &[("abalance", 23)]);
    encode::data_row(&mut buf, &[Some(b"-2374")]);
    encode::command_complete(&mut buf, "SELECT 1");
    encode::ready_for_query(&mut buf, b'I');
    buf
}

/// `SELECT * FROM pgbench_accounts LIMIT 100`: RowDescription of 4 columns, 100 DataRows
/// (two int4, an int4 balance, an 84-character filler), CommandComplete, ReadyForQuery.
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

fn count_frames(buf: &BytesMut) -> u64 {
    let mut copy = buf.clone();
    let mut n = 0;
    while next_frame(&mut copy, MAX_MESSAGE).unwrap().is_some() {
        n += 1;
    }
    n
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("next_frame");
    for (name, response) in [
        ("select_one_response_4_msgs", select_one_response()),
        ("hundred_rows_response_103_msgs", hundred_rows_response()),
    ] {
        let messages = count_frames(&response);
        assert!(messages == 4 || messages == 103, "{name}: {messages}");
        // Per message: criterion divides the time per iteration by this.
        group.throughput(Throughput::Elements(messages));
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || response.clone(),
                |buf| {
                    while let Some(frame) = next_frame(buf, MAX_MESSAGE).unwrap() {
                        black_box(frame);
                    }
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(frame, benches);
criterion_main!(frame);
