//! What a client is shown of the server behind it: the greeting at login, and ParameterStatus
//! messages when a later unit runs on a connection that reports other values.

use std::cell::RefCell;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pgsplit_backend::ServerConn;
use pgsplit_wire::encode;

use super::Session;
use crate::Ctx;
use crate::client_io::ClientConn;
use crate::ctx::{Params, WeakParams};

/// A remembered diff: (view, connection's list, their ParameterStatus messages).
type ParamDiff = (WeakParams, WeakParams, Bytes);

thread_local! {
    /// Diffs computed on this thread, for views the connection's list then replaces. Keyed by
    /// the lists' identity: a view shared by many clients (the greeting cache's) meets the
    /// same few pooled connections again and again, as every new client's first read on a
    /// replica does. Weak references: they keep the addresses from being reused while
    /// remembered, and a list changed with `Arc::make_mut` moves to a new address (even when
    /// it had no other owner), so a changed list never matches; yet they do not make every
    /// change of an unshared list copy it.
    static PARAM_DIFFS: RefCell<Vec<ParamDiff>> = const { RefCell::new(Vec::new()) };
}

/// Most diffs a thread remembers; past it the list starts over.
const PARAM_DIFFS_MAX: usize = 64;

/// Queues a ParameterStatus for every reported parameter whose value on `conn` differs from
/// what the client was last shown, and records the new values.
pub(super) fn show_changed_params(client: &mut ClientConn, view: &mut Params, conn: &ServerConn) {
    let shared = conn.params_shared();
    let (Some(encoded), covered) = param_diff(view, shared) else {
        return;
    };
    client.out.push(encoded);
    // The client now sees the connection's values. When the view names nothing the connection
    // does not report, it becomes the connection's own list, shared (no copy); else each value
    // is recorded in it.
    if covered {
        *view = Arc::clone(shared);
    } else {
        for (name, value) in shared.iter() {
            set_view(view, name, value);
        }
    }
}

/// The ParameterStatus messages that bring a client shown `view` to `params` (`None` when no
/// value differs), and whether `params` names every parameter of `view`. Remembered per thread
/// when both hold (see `PARAM_DIFFS`).
pub(super) fn param_diff(view: &Params, params: &Params) -> (Option<Bytes>, bool) {
    let remembered = PARAM_DIFFS.with_borrow(|diffs| {
        diffs
            .iter()
            .find(|(v, p, _)| v.as_ptr() == Arc::as_ptr(view) && p.as_ptr() == Arc::as_ptr(params))
            .map(|(_, _, encoded)| encoded.clone())
    });
    if let Some(encoded) = remembered {
        return (Some(encoded), true);
    }
    let mut encoded: Option<BytesMut> = None;
    for (i, (name, value)) in params.iter().enumerate() {
        // Connections of one server report their parameters in the same order, so the entry
        // at the same index is nearly always the one: no search of the whole view per name.
        let shown = match view.get(i) {
            Some((n, v)) if n == name => Some(v.as_str()),
            _ => view
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str()),
        };
        if shown != Some(value.as_str()) {
            encode::parameter_status(encoded.get_or_insert_with(BytesMut::new), name, value);
        }
    }
    let Some(encoded) = encoded else {
        return (None, false);
    };
    let encoded = encoded.freeze();
    let covered = view.len() <= params.len()
        && view.iter().enumerate().all(|(i, (n, _))| {
            params.get(i).is_some_and(|(m, _)| m == n) || params.iter().any(|(m, _)| m == n)
        });
    if covered {
        PARAM_DIFFS.with_borrow_mut(|diffs| {
            if diffs.len() >= PARAM_DIFFS_MAX {
                diffs.clear();
            }
            diffs.push((
                Arc::downgrade(view),
                Arc::downgrade(params),
                encoded.clone(),
            ));
        });
    }
    (Some(encoded), covered)
}

/// Records `name = value` in the view; a view shared with the greeting cache is copied only
/// when the value is new.
pub(super) fn set_view(view: &mut Arc<Vec<(String, String)>>, name: &str, value: &str) {
    if view.iter().any(|(n, v)| n == name && v == value) {
        return;
    }
    match Arc::make_mut(view).iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => value.clone_into(v),
        None => Arc::make_mut(view).push((name.to_owned(), value.to_owned())),
    }
}

/// Queues AuthenticationOk, the server's parameters (`params`: the session's view, encoded),
/// pgsplit's cancel key and ReadyForQuery. Returns a guard that unregisters the cancel key
/// when the session ends.
pub(super) fn greet(
    client: &mut ClientConn,
    session: &mut Session,
    id: u32,
    ctx: &Ctx,
    params: &[u8],
) -> KeyGuard {
    let secret: u32 = rand::random();
    // The slot already points at the connection held since startup, if any.
    ctx.cancels
        .register(id, secret, Arc::clone(&session.cancel));
    // One chunk for the whole greeting: a client connecting per transaction pays for it
    // every time.
    client.queue(|b| {
        encode::auth_ok(b);
        b.extend_from_slice(params);
        encode::backend_key_data(b, id, secret);
        encode::ready_for_query(b, b'I');
    });
    KeyGuard {
        ctx: ctx.clone(),
        id,
    }
}

/// Unregisters a client's cancel key on every exit path.
pub(super) struct KeyGuard {
    ctx: Ctx,
    id: u32,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.ctx.cancels.remove(self.id);
    }
}
