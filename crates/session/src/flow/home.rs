//! Session pooling with replicas: the client's own primary connection, set aside between
//! units while its reads run on replica connections, and replaced when it dies or the primary
//! moves.

use std::sync::Arc;

use pgsplit_backend::PooledConn;
use pgsplit_config::PoolMode;
use pgsplit_router::NodeRole;
use tracing::debug;

use super::greeting::show_changed_params;
use super::{Session, fatal_or_error};
use crate::client_io::ClientConn;
use crate::clients::Activity;
use crate::routing::ServerTarget;
use crate::{SessionError, replay};

impl Session {
    /// At a boundary: in session mode the client's own primary connection is set aside for
    /// it; any other connection goes back to its pool.
    pub(super) async fn let_go(&mut self) {
        let own = self.mode == PoolMode::Session
            && self
                .current
                .as_ref()
                .is_some_and(|t| t.role == NodeRole::Primary);
        // A connection out of step with the protocol is closed instead; the next unit for the
        // primary takes a new one.
        if !own || self.home.is_some() || self.relay.out_of_step {
            self.detach(None).await;
            return;
        }
        let (Some(conn), Some(target)) = (self.conn.take(), self.current.take()) else {
            return;
        };
        self.cancel.detach();
        // Still counted busy on the primary (`target.released()` comes with the real release).
        self.home = Some(Box::new((conn, target)));
    }

    /// Session mode: runs the unit routed to the primary on the client's own connection,
    /// taking a new one when there is none yet or it is no longer usable (closed by the
    /// server, or the primary moved after a failover or reload).
    pub(super) async fn use_home(
        &mut self,
        client: &mut ClientConn,
        target: Arc<ServerTarget>,
    ) -> Result<(), SessionError> {
        if let Some((mut conn, old)) = self.home.take().map(|home| *home) {
            if leads_to(&conn, &old, &target) && conn.is_alive() {
                // The client's settings may have changed on a replica meanwhile (read back
                // there): the connection is brought up to date, in one round trip if so.
                let refused = match replay::apply(&mut conn, &self.state).await {
                    Ok(refused) => refused,
                    Err(e) => {
                        conn.mark_broken();
                        old.released();
                        return Err(e.into());
                    }
                };
                if let Some(fields) = refused {
                    old.released();
                    let reset = self.ctx.snapshot.load().config.pool.reset_query.clone();
                    conn.release(Some(reset.as_str())).await;
                    return Err(SessionError::Refused(Box::new(fatal_or_error(
                        fields, true,
                    ))));
                }
                if self.view_synced != Some(conn.params_hash()) {
                    show_changed_params(client, &mut self.view, &conn);
                    self.view_synced = Some(conn.params_hash());
                }
                self.cancel.attach(conn.addr(), conn.cancel_key());
                self.registered.set_activity(Activity::Active);
                self.relay.one_unit = false;
                self.relay.query_duration = Some(old.duration.clone());
                self.current = Some(old);
                self.conn = Some(conn);
                return Ok(());
            }
            debug!("the client's own primary connection is gone or moved; taking another");
            // Closed by the server, sent something unasked, or on a server that is no longer
            // the primary (which may not answer a reset): closed, never pooled again.
            close(conn, &old).await;
        }
        self.attach(client, false, Arc::clone(&target)).await?;
        self.target = target;
        Ok(())
    }

    /// Session mode, before a read on a replica: closes the client's own connection if it no
    /// longer leads to the primary (a failover, or a reload that moved it), so that it neither
    /// holds a slot nor counts busy on a server that is not the primary any more.
    pub(super) async fn drop_moved_home(&mut self) {
        let snapshot = self.ctx.snapshot.load_full();
        // No primary known (a failover under way): the connection is kept for now.
        let Some(index) = snapshot.topology.primary else {
            return;
        };
        let Some(primary) = self.router.target(&snapshot, &self.ctx.route_kit, index) else {
            return;
        };
        if self
            .home
            .as_ref()
            .is_some_and(|home| !leads_to(&home.0, &home.1, &primary))
            && let Some((conn, old)) = self.home.take().map(|home| *home)
        {
            debug!("the primary moved; closing the client's own connection to the old one");
            close(conn, &old).await;
        }
    }
}

/// Closes the client's own connection `conn` (checked out for `old`): never pooled again.
async fn close(mut conn: PooledConn, old: &ServerTarget) {
    conn.mark_broken();
    old.released();
    conn.release(None).await;
}

/// Whether `conn`, checked out for `old`, is a connection to the server `target` names now:
/// the same pool, and the same address, password and TLS settings (a reload may change them
/// under the same server name).
fn leads_to(conn: &PooledConn, old: &ServerTarget, target: &ServerTarget) -> bool {
    *conn.key() == target.key
        && old.settings.addr == target.settings.addr
        && old.settings.password == target.settings.password
        && old.settings.tls == target.settings.tls
}
