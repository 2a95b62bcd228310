//! Classifier microbenchmarks: a cache hit, an uncached ~4 KB ORM-style SELECT, and sqlparser on the same text.
//!
//! Method for the uncached case: `Classifier::classify_uncached` runs exactly what a
//! cache miss runs (fast path, then pg_query and the tree walk, then the hint scan)
//! without reading or filling the cache, so every iteration is a miss on the same text.
//! (Appending a unique comment would also miss, but changes the text and adds formatting
//! work to the measured loop.)

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pgsplit_classify::{Class, Classifier, Options};

/// A short OLTP point read.
const OLTP: &str = "SELECT id, name, email FROM users WHERE id = $1";

/// An ORM-style SELECT of about 4 KB: many aliased columns and joins.
fn orm_query() -> String {
    let tables = [
        "orders",
        "customers",
        "addresses",
        "order_items",
        "products",
        "categories",
        "suppliers",
        "warehouses",
        "shipments",
        "invoices",
        "payments",
        "discounts",
    ];
    let mut columns = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        for c in ["id", "created_at", "updated_at", "status", "name", "amount"] {
            columns.push(format!("t{i}.\"{c}\" AS \"{t}_{c}\""));
        }
    }
    let mut sql = format!(
        "SELECT {} FROM \"public\".\"orders\" AS t0",
        columns.join(", ")
    );
    for (i, t) in tables.iter().enumerate().skip(1) {
        sql.push_str(&format!(
            " LEFT OUTER JOIN \"public\".\"{t}\" AS t{i} ON t{i}.\"id\" = t{p}.\"{t}_id\"",
            p = i - 1
        ));
    }
    sql.push_str(
        " WHERE t0.\"status\" IN ($1, $2, $3) AND t1.\"created_at\" >= $4 \
         AND t4.\"amount\" > $5 ORDER BY t0.\"created_at\" DESC, t0.\"id\" LIMIT $6 OFFSET $7",
    );
    sql
}

fn benches(c: &mut Criterion) {
    let classifier = Classifier::new(Options::default());
    assert_eq!(classifier.classify(OLTP).class, Class::Read);
    c.bench_function("classify/cache_hit_oltp_select", |b| {
        b.iter(|| classifier.classify(black_box(OLTP)))
    });

    let orm = orm_query();
    assert!(
        (3_500..=4_600).contains(&orm.len()),
        "ORM query is {} bytes",
        orm.len()
    );
    assert_eq!(classifier.classify_uncached(&orm).class, Class::Read);
    c.bench_function("classify/uncached_orm_select_4k", |b| {
        b.iter(|| classifier.classify_uncached(black_box(&orm)))
    });

    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    assert!(sqlparser::parser::Parser::parse_sql(&dialect, &orm).is_ok());
    c.bench_function("sqlparser/parse_orm_select_4k", |b| {
        b.iter(|| sqlparser::parser::Parser::parse_sql(&dialect, black_box(&orm)))
    });
}

criterion_group!(classify, benches);
criterion_main!(classify);
