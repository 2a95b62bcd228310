//! Table tests for the key locator.

use super::{Locator, locate};

const BLOCK: &str = "\
# comment: not a key
listen: 127.0.0.1:6432   # trailing comment
admin:
  listen: 127.0.0.1:9930
pool: { mode: session, size: 5 }
users:
  - name: app
    password: \"a # b\"
  - { name: admin, admin: true }
servers:
- name: primary
  host: 127.0.0.1
  tags:
  - x
  port: 15432
-
  name: r1
  role: replica
reset: |
  port: 1
log:
  level: info
";

#[test]
fn finds_keys_in_block_yaml() {
    let cases = [
        ("listen", Some((2, 1))),
        ("admin", Some((3, 1))),
        ("admin.listen", Some((4, 3))),
        ("pool.mode", Some((5, 9))),
        ("pool.size", Some((5, 24))),
        ("users[0]", Some((7, 3))),
        ("users[0].name", Some((7, 5))),
        ("users[0].password", Some((8, 5))),
        ("users[1]", Some((9, 3))),
        ("users[1].admin", Some((9, 20))),
        ("servers[0]", Some((11, 1))),
        ("servers[0].host", Some((12, 3))),
        ("servers[0].tags[0]", Some((14, 3))),
        ("servers[0].port", Some((15, 3))),
        ("servers[1]", Some((16, 1))),
        ("servers[1].name", Some((17, 3))),
        ("servers[1].role", Some((18, 3))),
        ("reset", Some((19, 1))),
        ("reset.port", Some((19, 1))),
        ("log.level", Some((22, 3))),
        // Absent keys fall back to their nearest written ancestor.
        ("servers[1].port", Some((16, 1))),
        ("pool.min_idle", Some((5, 1))),
        ("servers[7].port", Some((10, 1))),
        ("shutdown_timeout", None),
        ("", None),
    ];
    let locator = Locator::new(BLOCK);
    for (path, expected) in cases {
        assert_eq!(locator.locate(path), expected, "{path}");
    }
}

#[test]
fn flow_sequences_and_nested_flow() {
    let text = "servers: [{ host: a }, { host: b, port: 1 }]\nx: { a: { b: 1 }, c: [1, 2] }\n";
    assert_eq!(locate(text, "servers[1].port"), Some((1, 35)));
    assert_eq!(locate(text, "servers[0].host"), Some((1, 13)));
    assert_eq!(locate(text, "x.a.b"), Some((2, 11)));
    assert_eq!(locate(text, "x.c[1]"), Some((2, 26)));
}

#[test]
fn references_and_tabs() {
    let text = "users:\n  - { name: ${N}, password: ${P} }\npool:\n\tsize: 5\n";
    let locator = Locator::new(text);
    assert_eq!(locator.locate("users[0].password"), Some((2, 19)));
    assert_eq!(locator.path_at(2, 15), Some("users[0].name"));
    assert_eq!(locator.path_at(2, 33), Some("users[0].password"));
    assert_eq!(locator.path_at(4, 1), Some("pool.size"));
    assert_eq!(locator.path_at(9, 1), None);
}
