//! The life of one client connection, read top to bottom: startup, authenticate, attach a
//! server connection, greet, relay, clean up.

use std::net::SocketAddr;

use pgsplit_backend::{ConnectParams, ServerConn, connect};
use pgsplit_config::Config;
use pgsplit_wire::{ErrorFields, encode, sqlstate};
use tokio::net::TcpStream;
use tokio::time::{Duration, timeout};
use tracing::{Instrument, debug, info_span, warn};

use crate::client_io::ClientConn;
use crate::relay::{RelayEnd, RelayState, relay};
use crate::startup::{ClientStartup, Hello, authenticate, read_hello};
use crate::{CancelTarget, Ctx, SessionError};

/// Databases that name the admin console rather than a server database.
const ADMIN_DATABASES: [&str; 2] = ["pgsplit", "pgbouncer"];

/// How long forwarding a cancel request may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one client connection until it ends. Never panics on client or server input; every
/// failure the client can still hear about is sent to it as an ErrorResponse.
pub async fn run(stream: TcpStream, peer: SocketAddr, ctx: Ctx) {
    let id = ctx.new_conn_id();
    let span = info_span!(
        "client",
        conn_id = id,
        peer = %peer,
        user = tracing::field::Empty,
        database = tracing::field::Empty
    );
    serve(stream, id, ctx).instrument(span).await;
}

async fn serve(stream: TcpStream, id: u32, ctx: Ctx) {
    let snapshot = ctx.snapshot.load_full();
    let config = &snapshot.config;
    let mut client = ClientConn::new(stream, config.limits.max_message_size);
    let limit = config.limits.startup_timeout;
    let hello = match timeout(limit, read_hello(&mut client)).await {
        Ok(Ok(hello)) => hello,
        Ok(Err(e)) => return end(client, e).await,
        Err(_) => return end(client, SessionError::StartupTimeout).await,
    };
    let startup = match hello {
        Hello::Cancel { pid, secret } => return forward_cancel(&ctx, pid, secret).await,
        Hello::Session(s) => s,
    };
    let span = tracing::Span::current();
    span.record("user", startup.user.as_str());
    span.record("database", startup.database.as_str());
    let user = config.user(&startup.user);
    let auth = authenticate(&mut client, &startup.user, user, &ctx.secrets);
    match timeout(limit, auth).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return end(client, e).await,
        Err(_) => return end(client, SessionError::StartupTimeout).await,
    }
    if ADMIN_DATABASES.contains(&startup.database.as_str()) {
        let msg = "the admin console is not available in this version of pgsplit";
        return end(client, refused(sqlstate::FEATURE_NOT_SUPPORTED, msg)).await;
    }
    let mut server = match attach(config, &startup).await {
        Ok(server) => server,
        Err(e) => return end(client, e).await,
    };
    let _key = greet(&mut client, &server, id, &ctx);
    if let Err(e) = client.flush().await {
        server.close().await;
        return end(client, e).await;
    }
    let mut state = RelayState::new(server.txn_status());
    let mut shutdown = ctx.shutdown.clone();
    let res = relay(&mut client, &mut server, &mut state, &mut shutdown).await;
    match res {
        Ok(RelayEnd::Terminated) => debug!("client terminated"),
        Ok(RelayEnd::Drained) => debug!("closed idle client while draining"),
        Err(e) => {
            if !matches!(e, SessionError::Server(_) | SessionError::ServerGone(_)) {
                server.close().await;
            }
            return end(client, e).await;
        }
    }
    server.close().await;
}

/// Opens the client's server connection on the primary, as the configured server user.
async fn attach(config: &Config, startup: &ClientStartup) -> Result<ServerConn, SessionError> {
    let Some(primary) = config.primary() else {
        return Err(refused(
            sqlstate::CANNOT_CONNECT_NOW,
            "no primary server is configured",
        ));
    };
    let user = config.user(&startup.user);
    let addr = primary.addr();
    let params = ConnectParams {
        addr: &addr,
        user: user.map_or(startup.user.as_str(), |u| u.server_user.as_str()),
        password: user.and_then(|u| u.server_password.as_deref()),
        database: &startup.database,
        params: &startup.params,
        connect_timeout: config.pool.connect_timeout,
        max_message: config.limits.max_message_size,
    };
    Ok(connect(&params).await?)
}

/// Queues AuthenticationOk, the server's parameters, pgsplit's cancel key and ReadyForQuery.
/// Returns a guard that unregisters the cancel key when the session ends.
fn greet(client: &mut ClientConn, server: &ServerConn, id: u32, ctx: &Ctx) -> KeyGuard {
    client.queue(encode::auth_ok);
    for (name, value) in server.params() {
        client.queue(|b| encode::parameter_status(b, name, value));
    }
    let secret: u32 = rand::random();
    ctx.cancels.register(id, secret);
    let target = CancelTarget {
        addr: server.addr().to_owned(),
        key: server.cancel_key(),
    };
    ctx.cancels.set_target(id, Some(target));
    client.queue(|b| encode::backend_key_data(b, id, secret));
    client.queue(|b| encode::ready_for_query(b, server.txn_status()));
    KeyGuard {
        ctx: ctx.clone(),
        id,
    }
}

/// Unregisters a client's cancel key on every exit path.
struct KeyGuard {
    ctx: Ctx,
    id: u32,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.ctx.cancels.remove(self.id);
    }
}

async fn forward_cancel(ctx: &Ctx, pid: u32, secret: u32) {
    let Some(target) = ctx.cancels.lookup(pid, secret) else {
        debug!(pid, "cancel request with an unknown key ignored");
        return;
    };
    if let Err(e) = pgsplit_backend::cancel(&target.addr, target.key, CANCEL_TIMEOUT).await {
        warn!(error = %e, "forwarding a cancel request failed");
    }
}

/// Ends a session that failed: tell the client why (if it can still hear) and log.
async fn end(client: ClientConn, e: SessionError) {
    if e.is_quiet() {
        debug!("client disconnected");
    } else {
        warn!(error = %e, "session ended");
    }
    match e.client_error() {
        Some(fields) => client.fail(&fields).await,
        None => drop(client),
    }
}

fn refused(code: pgsplit_wire::SqlState, message: &str) -> SessionError {
    SessionError::Refused(Box::new(ErrorFields::fatal(code, message)))
}

/// Refuses a connection the proxy cannot take (e.g. over `max_client_connections`): reads the
/// startup packet so the client is listening, then sends a FATAL error and closes.
pub async fn reject(stream: TcpStream, fields: ErrorFields, max_message: usize, limit: Duration) {
    let mut client = ClientConn::new(stream, max_message);
    if let Ok(Ok(Hello::Session(_))) = timeout(limit, read_hello(&mut client)).await {
        client.fail(&fields).await;
    }
}
