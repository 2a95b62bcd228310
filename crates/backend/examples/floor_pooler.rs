//! The floor of a transaction pooler on tokio, for benchmarks only: no parsing, no routing, no
//! authentication of clients, one event loop, one server. It measures what tokio and the kernel
//! cost per transaction on their own, against which pgsplit's own work and PgBouncer are read
//! (docs/benchmarks.md). Never run it where a client could reach it: it lets anyone in.
//!
//! `cargo run --release -p pgsplit-backend --example floor_pooler -- LISTEN_PORT SERVER_PORT
//! [POOL_SIZE]` opens POOL_SIZE connections to 127.0.0.1:SERVER_PORT as the bench's md5 user
//! (`bench_md5`, database `app`), then listens on 127.0.0.1:LISTEN_PORT. Each client gets a
//! pooled connection for one exchange: its bytes are written as read, and the answer relayed
//! up to a ReadyForQuery that reports no open transaction, when the connection goes back.
//! Only transactions of one exchange work (`pgbench -S` in `-M simple` or `-M extended`): after a
//! ReadyForQuery inside a transaction it keeps reading the server and never the client. Clients
//! must send whole messages in one write and not pipeline (pgbench does both); a failed
//! exchange drops its server connection.

use md5::{Digest, Md5};
use std::{cell::RefCell, collections::VecDeque, rc::Rc};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

const USER: &str = "bench_md5";
const DATABASE: &str = "app";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Idle server connections (newest last) and the clients waiting for one (oldest first).
#[derive(Default)]
struct Pool {
    idle: Vec<TcpStream>,
    waiters: VecDeque<oneshot::Sender<TcpStream>>,
}

type Shared = Rc<RefCell<Pool>>;

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&len4(body.len()));
    out.extend_from_slice(body);
    out
}

/// A message length field: the body plus the field itself.
fn len4(body: usize) -> [u8; 4] {
    i32::try_from(body + 4).unwrap_or(i32::MAX).to_be_bytes()
}

async fn read_message(s: &mut TcpStream) -> Result<(u8, Vec<u8>)> {
    let tag = s.read_u8().await?;
    let len = usize::try_from(s.read_i32().await?)?;
    let mut body = vec![0; len.checked_sub(4).ok_or("bad length")?];
    s.read_exact(&mut body).await?;
    Ok((tag, body))
}

/// Opens and authenticates one server connection (md5 or trust).
async fn connect(port: u16) -> Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.set_nodelay(true)?;
    let mut body = 196_608_i32.to_be_bytes().to_vec();
    for part in ["user", USER, "database", DATABASE, ""] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    let mut startup = len4(body.len()).to_vec();
    startup.extend(body);
    s.write_all(&startup).await?;
    loop {
        let (tag, body) = read_message(&mut s).await?;
        match tag {
            b'R' if body.get(..4) == Some(&[0, 0, 0, 5]) => {
                let inner = format!("{:x}", Md5::digest(format!("{USER}{USER}")));
                let mut outer = Md5::new();
                outer.update(inner.as_bytes());
                outer.update(body.get(4..8).ok_or("short md5 salt")?);
                let mut password = format!("md5{:x}", outer.finalize()).into_bytes();
                password.push(0);
                s.write_all(&message(b'p', &password)).await?;
            }
            b'R' if body.get(..4) != Some(&[0, 0, 0, 0]) => return Err("only md5 or trust".into()),
            b'E' => return Err(String::from_utf8_lossy(&body).into_owned().into()),
            b'Z' => return Ok(s),
            _ => {}
        }
    }
}

async fn acquire(pool: &Shared) -> Result<TcpStream> {
    let rx = {
        let mut p = pool.borrow_mut();
        if let Some(conn) = p.idle.pop() {
            return Ok(conn);
        }
        let (tx, rx) = oneshot::channel();
        p.waiters.push_back(tx);
        rx
    };
    Ok(rx.await?)
}

fn release(pool: &Shared, mut conn: TcpStream) {
    let mut p = pool.borrow_mut();
    while let Some(waiter) = p.waiters.pop_front() {
        match waiter.send(conn) {
            Ok(()) => return,
            Err(back) => conn = back,
        }
    }
    p.idle.push(conn);
}

/// Greets a client without asking for a password, then relays its exchanges.
async fn serve(mut client: TcpStream, pool: Shared) -> Result<()> {
    client.set_nodelay(true)?;
    loop {
        let len = usize::try_from(client.read_i32().await?)?;
        let mut body = vec![0; len.checked_sub(4).ok_or("bad length")?];
        client.read_exact(&mut body).await?;
        // SSLRequest: no.
        if body.get(..4) == Some(&[0x04, 0xd2, 0x16, 0x2f]) {
            client.write_all(b"N").await?;
            continue;
        }
        break;
    }
    let mut greeting = message(b'R', &0_i32.to_be_bytes());
    for (name, value) in [
        ("server_version", "16.0"),
        ("client_encoding", "UTF8"),
        ("standard_conforming_strings", "on"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
    ] {
        let body = [name.as_bytes(), b"\0", value.as_bytes(), b"\0"].concat();
        greeting.extend(message(b'S', &body));
    }
    greeting.extend(message(b'K', &[0, 0, 0, 1, 0, 0, 0, 2]));
    greeting.extend(message(b'Z', b"I"));
    client.write_all(&greeting).await?;
    let mut from_client = vec![0_u8; 8192];
    let mut from_server = vec![0_u8; 8192];
    loop {
        let n = client.read(&mut from_client).await?;
        if n == 0 || from_client[0] == b'X' {
            return Ok(());
        }
        let mut server = acquire(&pool).await?;
        server.write_all(&from_client[..n]).await?;
        let mut have = 0;
        let mut idle = false;
        while !idle {
            let read = server.read(&mut from_server[have..]).await?;
            if read == 0 {
                return Err("server closed".into());
            }
            have += read;
            // Whole messages go to the client; a partial one stays for the next read.
            let mut whole = 0;
            while let Some(header) = from_server.get(whole..whole + 5) {
                let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
                let end = whole + 1 + usize::try_from(len)?;
                if end > have {
                    break;
                }
                idle = header[0] == b'Z' && from_server.get(whole + 5) == Some(&b'I');
                whole = end;
            }
            client.write_all(&from_server[..whole]).await?;
            from_server.copy_within(whole..have, 0);
            have -= whole;
        }
        release(&pool, server);
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: floor_pooler LISTEN_PORT SERVER_PORT [POOL_SIZE]";
    let listen: u16 = args.next().ok_or(usage)?.parse()?;
    let server: u16 = args.next().ok_or(usage)?.parse()?;
    let size: usize = args.next().map_or(Ok(20), |s| s.parse())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let pool = Shared::default();
        for _ in 0..size {
            let conn = connect(server).await?;
            pool.borrow_mut().idle.push(conn);
        }
        let listener = TcpListener::bind(("127.0.0.1", listen)).await?;
        eprintln!("floor_pooler: 127.0.0.1:{listen} -> 127.0.0.1:{server}, {size} connections");
        loop {
            let (client, _) = listener.accept().await?;
            let pool = pool.clone();
            tokio::task::spawn_local(async move {
                if let Err(e) = serve(client, pool).await {
                    eprintln!("floor_pooler: client: {e}");
                }
            });
        }
    })
}
