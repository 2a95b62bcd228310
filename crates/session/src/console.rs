//! The admin console: clients that connect to database `pgsplit` (or `pgbouncer`) talk to
//! pgsplit itself, never to a server. After the usual authentication, an admin user gets a
//! greeting made up by pgsplit and then simple-protocol commands: `SHOW POOLS`, `SHOW
//! SERVERS`, `SHOW CLIENTS`, `SHOW STATS`, `SHOW CONFIG`, `SHOW VERSION`, `RELOAD`, `PAUSE`,
//! `RESUME` and `EXPLAIN ROUTE <sql>` (see docs/admin.md for the columns).
//!
//! Every result is a RowDescription, DataRows and CommandComplete in text format. The
//! extended protocol is refused (0A000) and its messages skipped until Sync, as PostgreSQL
//! skips after an error. A user without `admin: true` gets FATAL 42501.

mod command;
mod show;

use pgsplit_wire::{ErrorFields, encode, frontend, sqlstate};
use tokio::sync::watch;
use tokio::time::{Duration, Instant};
use tracing::{debug, info, warn};

use crate::Ctx;
use crate::client_io::ClientConn;
use crate::clients::ClientGuard;
use crate::startup::ClientStartup;
use command::{Command, Show};
use show::{Asker, Table};

/// The PostgreSQL version the console claims: libpq derives the server version number from
/// the leading `major.minor` (here 16.0); the rest says who is really answering.
fn server_version() -> String {
    format!("16.0 (pgsplit {})", env!("CARGO_PKG_VERSION"))
}

/// How often `PAUSE` looks at the pools while waiting for busy connections to come back.
const PAUSE_POLL: Duration = Duration::from_millis(10);

/// Serves an authenticated client of the admin console until it leaves or the proxy drains.
/// `admin` says whether its user may use the console; the client stays listed in `SHOW
/// CLIENTS` until `_registered` is dropped on return.
pub(crate) async fn serve(
    mut client: ClientConn,
    ctx: &Ctx,
    id: u32,
    startup: &ClientStartup,
    admin: bool,
    _registered: ClientGuard,
) {
    if !admin {
        warn!("refused the admin console to a user without admin: true");
        let fields = ErrorFields::fatal(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!(
                "user \"{}\" may not use the pgsplit admin console (database \"{}\")",
                startup.user, startup.database
            ),
        )
        .with_hint("set admin: true on the user in the pgsplit config");
        return client.fail(&fields).await;
    }
    let application_name = startup
        .params
        .iter()
        .find(|(k, _)| k == "application_name")
        .map_or("", |(_, v)| v.as_str());
    greet(&mut client, id, application_name);
    let asker = Asker {
        user: &startup.user,
        database: &startup.database,
        application_name,
    };
    debug!("admin console session started");
    let mut shutdown = ctx.shutdown.clone();
    // After an extended-protocol message was refused, skip until Sync.
    let mut skipping = false;
    loop {
        if client.flush().await.is_err() {
            return;
        }
        let frame = tokio::select! {
            frame = client.read_frame() => frame,
            _ = draining(&mut shutdown) => {
                let fields = ErrorFields::fatal(
                    sqlstate::ADMIN_SHUTDOWN,
                    "terminating connection because pgsplit is shutting down",
                );
                return client.fail(&fields).await;
            }
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                debug!(error = %e, "admin console client gone");
                return;
            }
        };
        let message = match frontend::parse(&frame) {
            Ok(m) => m,
            Err(e) => {
                let fields = ErrorFields::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string());
                return client.fail(&fields).await;
            }
        };
        use frontend::FrontendMessage as M;
        match message {
            M::Query { sql } => {
                answer(&mut client, ctx, &asker, sql).await;
                client.queue(|b| encode::ready_for_query(b, b'I'));
            }
            M::Parse { .. }
            | M::Bind { .. }
            | M::Describe { .. }
            | M::Execute { .. }
            | M::Close { .. } => {
                if !skipping {
                    skipping = true;
                    client.queue_error(&extended_refused());
                }
            }
            M::Sync => {
                skipping = false;
                client.queue(|b| encode::ready_for_query(b, b'I'));
            }
            M::FunctionCall { .. } => {
                client.queue_error(&extended_refused());
                client.queue(|b| encode::ready_for_query(b, b'I'));
            }
            M::Flush | M::CopyData { .. } | M::CopyDone | M::CopyFail { .. } => {}
            M::Terminate => return,
            M::Password { .. } => {
                let fields = ErrorFields::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "unexpected password message after authentication",
                );
                return client.fail(&fields).await;
            }
        }
    }
}

fn extended_refused() -> ErrorFields {
    ErrorFields::error(
        sqlstate::FEATURE_NOT_SUPPORTED,
        "the pgsplit admin console only accepts the simple query protocol",
    )
    .with_hint("use psql or a driver's simple_query; prepared statements are not supported")
}

/// Queues AuthenticationOk, made-up server parameters, a cancel key and ReadyForQuery.
fn greet(client: &mut ClientConn, id: u32, application_name: &str) {
    client.queue(encode::auth_ok);
    let version = server_version();
    let params = [
        ("server_version", version.as_str()),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("application_name", application_name),
    ];
    for (name, value) in params {
        client.queue(|b| encode::parameter_status(b, name, value));
    }
    // Nothing on the console can be cancelled; the key only satisfies clients that expect one.
    let secret: u32 = rand::random();
    client.queue(|b| encode::backend_key_data(b, id, secret));
    client.queue(|b| encode::ready_for_query(b, b'I'));
}

/// Runs one command and queues its result or error (not the ReadyForQuery).
async fn answer(client: &mut ClientConn, ctx: &Ctx, asker: &Asker<'_>, sql: &str) {
    let command = match command::parse(sql) {
        Ok(c) => c,
        Err(message) => {
            return client.queue_error(&ErrorFields::error(sqlstate::SYNTAX_ERROR, message));
        }
    };
    let snapshot = ctx.snapshot.load_full();
    let result = match command {
        Command::Empty => {
            return client.queue(encode::empty_query_response);
        }
        Command::Show(Show::Pools) => {
            Ok(show::pools(&ctx.pools.stats(), snapshot.config.pool.mode))
        }
        Command::Show(Show::Servers) => Ok(show::servers(&snapshot, &ctx.pools.stats())),
        Command::Show(Show::Clients) => Ok(show::clients(&ctx.clients.list())),
        Command::Show(Show::Stats) => Ok(show::stats(&ctx.clients.totals(), ctx.clients.uptime())),
        Command::Show(Show::Config) => Ok(show::config(&snapshot)),
        Command::Show(Show::Version) => Ok(show::version()),
        Command::ExplainRoute(sql) => Ok(show::explain_route(&snapshot, sql, asker)),
        Command::Reload => reload(ctx).await,
        Command::Pause => pause(ctx, snapshot.config.shutdown_timeout).await,
        Command::Resume => {
            let was = ctx.control.resume();
            info!(was_paused = was, "admin console: RESUME");
            Ok(done("RESUME"))
        }
    };
    match result {
        Ok(table) => send_table(client, &table),
        Err(fields) => client.queue_error(&fields),
    }
}

/// A result with no rows and no columns: only the CommandComplete tag.
fn done(tag: &'static str) -> Table {
    Table {
        columns: Vec::new(),
        rows: Vec::new(),
        tag,
    }
}

async fn reload(ctx: &Ctx) -> Result<Table, ErrorFields> {
    match ctx.control.reload().await {
        Ok(generation) => {
            info!(generation, "admin console: RELOAD applied");
            Ok(done("RELOAD"))
        }
        Err(message) => {
            warn!(error = %message, "admin console: RELOAD failed");
            Err(ErrorFields::error(
                sqlstate::CONFIG_FILE_ERROR,
                format!("reload failed; the previous config stays in effect: {message}"),
            ))
        }
    }
}

/// Sets the pause flag, then waits until no server connection is checked out (polling the
/// pools every 10 ms), for at most `limit` (`shutdown_timeout`). The flag stays set either
/// way; a timeout is reported as an error naming how many connections are still busy.
async fn pause(ctx: &Ctx, limit: Duration) -> Result<Table, ErrorFields> {
    let was = ctx.control.pause();
    info!(was_paused = was, "admin console: PAUSE");
    let deadline = Instant::now() + limit;
    loop {
        let busy: usize = ctx.pools.stats().iter().map(|s| s.busy).sum();
        if busy == 0 {
            return Ok(done("PAUSE"));
        }
        if Instant::now() >= deadline {
            return Err(ErrorFields::error(
                sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "{busy} server connection(s) still busy after {} ms; the pause stays in effect",
                    limit.as_millis()
                ),
            )
            .with_hint("RESUME lifts the pause; clients in session pooling or pinned hold their connection until they leave"));
        }
        tokio::time::sleep(PAUSE_POLL).await;
    }
}

/// Queues RowDescription, DataRows and CommandComplete (only CommandComplete for a table
/// without columns).
fn send_table(client: &mut ClientConn, table: &Table) {
    if !table.columns.is_empty() {
        let columns: Vec<(&str, u32)> = table.columns.iter().map(|(n, k)| (*n, k.oid())).collect();
        client.queue(|b| encode::row_description(b, &columns));
        for row in &table.rows {
            let values: Vec<Option<&[u8]>> = row
                .iter()
                .map(|v| v.as_deref().map(str::as_bytes))
                .collect();
            client.queue(|b| encode::data_row(b, &values));
        }
    }
    client.queue(|b| encode::command_complete(b, table.tag));
}

/// Resolves once the proxy is draining (or its shutdown sender is gone).
async fn draining(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|d| *d).await;
}
