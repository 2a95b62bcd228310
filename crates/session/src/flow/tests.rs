//! Unit tests of `flow.rs`: which units are answered locally, and the parameter view.

use bytes::BytesMut;
use pgsplit_wire::encode;

use super::named_parses_then_sync;
use super::set_view;
use std::sync::Arc;

#[test]
fn a_shared_view_is_copied_only_for_a_new_value() {
    let cached = Arc::new(vec![("TimeZone".to_owned(), "UTC".to_owned())]);
    let mut view = Arc::clone(&cached);
    set_view(&mut view, "TimeZone", "UTC");
    assert!(Arc::ptr_eq(&view, &cached), "the same value copies nothing");
    set_view(&mut view, "TimeZone", "Europe/Paris");
    assert!(!Arc::ptr_eq(&view, &cached));
    assert_eq!(cached[0].1, "UTC", "the cached greeting is unchanged");
    set_view(&mut view, "in_hot_standby", "on");
    assert_eq!(
        *view,
        [
            ("TimeZone".to_owned(), "Europe/Paris".to_owned()),
            ("in_hot_standby".to_owned(), "on".to_owned())
        ]
    );
}

#[test]
fn only_whole_named_parses_followed_by_sync_are_answered_locally() {
    let build = |f: &dyn Fn(&mut BytesMut)| {
        let mut b = BytesMut::new();
        f(&mut b);
        b
    };
    let one = build(&|b| {
        encode::parse(b, "s1", "select 1", &[]);
        encode::sync(b);
    });
    assert_eq!(named_parses_then_sync(&one, 1 << 20), Some(1));
    assert_eq!(
        named_parses_then_sync(&one[..one.len() - 1], 1 << 20),
        None,
        "Sync not whole"
    );
    let two = build(&|b| {
        encode::parse(b, "s1", "select 1", &[]);
        encode::parse(b, "s2", "select 2", &[23]);
        encode::sync(b);
    });
    assert_eq!(named_parses_then_sync(&two, 1 << 20), Some(2));
    let unnamed = build(&|b| {
        encode::parse(b, "", "select 1", &[]);
        encode::sync(b);
    });
    assert_eq!(named_parses_then_sync(&unnamed, 1 << 20), None);
    let with_bind = build(&|b| {
        encode::parse(b, "s1", "select 1", &[]);
        encode::bind(b, "", "s1", &[], &[], &[]);
        encode::sync(b);
    });
    assert_eq!(named_parses_then_sync(&with_bind, 1 << 20), None);
    let query = build(&|b| encode::query(b, "select 1"));
    assert_eq!(named_parses_then_sync(&query, 1 << 20), None);
    assert_eq!(
        named_parses_then_sync(&[b'P', 0, 0, 0, 2], 1 << 20),
        None,
        "bad length"
    );
}

/// The ParameterStatus messages that bring a view to a connection's values: only the values
/// that differ, the same bytes again for the same lists (remembered per thread), none for equal
/// values, and "not covered" when the view names a parameter the connection does not report.
#[test]
fn parameter_diffs_send_what_differs_and_are_remembered() {
    use super::greeting::param_diff;
    let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
    let view = Arc::new(vec![pair("TimeZone", "UTC"), pair("in_hot_standby", "off")]);
    let replica = Arc::new(vec![pair("TimeZone", "UTC"), pair("in_hot_standby", "on")]);
    let mut expected = BytesMut::new();
    encode::parameter_status(&mut expected, "in_hot_standby", "on");
    let (first, covered) = param_diff(&view, &replica);
    assert_eq!(first.as_deref(), Some(&expected[..]));
    assert!(covered);
    let (again, covered) = param_diff(&view, &replica);
    assert_eq!(again, first, "remembered");
    assert!(covered);
    let same = Arc::new(vec![pair("TimeZone", "UTC"), pair("in_hot_standby", "off")]);
    assert_eq!(param_diff(&view, &same), (None, false), "nothing differs");
    let fewer = Arc::new(vec![pair("in_hot_standby", "on")]);
    let (some, covered) = param_diff(&view, &fewer);
    assert_eq!(some.as_deref(), Some(&expected[..]));
    assert!(!covered, "TimeZone is not reported by it");
    // Another list with the same contents is diffed on its own, with the same result.
    let replica2 = Arc::new((*replica).clone());
    assert_eq!(param_diff(&view, &replica2).0, first);
    // A remembered view that changes (here it has no other owner: the memo only holds weak
    // references) moves to a new address, so the old diff is not reused for it.
    let mut changed = Arc::new(vec![pair("TimeZone", "UTC"), pair("in_hot_standby", "off")]);
    let before = Arc::as_ptr(&changed);
    assert!(param_diff(&changed, &replica).1);
    set_view(&mut changed, "TimeZone", "Europe/Paris");
    assert_ne!(Arc::as_ptr(&changed), before, "moved, not changed in place");
    let mut both = BytesMut::new();
    encode::parameter_status(&mut both, "TimeZone", "UTC");
    encode::parameter_status(&mut both, "in_hot_standby", "on");
    assert_eq!(param_diff(&changed, &replica).0.as_deref(), Some(&both[..]));
}

/// Every client's session is one boxed future of this size, idle or not: it is most of what an
/// idle client costs (`cargo xtask bench --memory`), so growth here must be deliberate.
#[tokio::test]
async fn the_session_future_stays_small() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (stream, peer) = listener.accept().await.unwrap();
    let yaml = "users: [{ name: a, auth: trust }]\nservers: [{ host: 127.0.0.1 }]\n";
    let config = pgsplit_config::parse(yaml, "t.yaml").unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let metrics = Arc::new(pgsplit_telemetry::Metrics::new());
    let (ctx, _inbox) = crate::Ctx::new(config, metrics, rx);
    let session = super::run(stream, peer, ctx);
    let size = std::mem::size_of_val(&session);
    eprintln!("session future: {size} bytes");
    assert!(size <= 7 * 1024, "the session future grew to {size} bytes");
}
