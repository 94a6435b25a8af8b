//! A fault-injecting TCP proxy: every link the nemesis can break (client → server, replica →
//! primary, server → PostgreSQL) runs through one. It passes bytes both ways, and on the
//! nemesis's word delays them, black-holes them (accepts and reads, forwards nothing, answers
//! nothing — what a partition looks like to TCP), or resets every connection it carries.
//! Its upstream can change, so a restarted server may come back on another port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// What the proxy does with the bytes it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward them.
    Pass,
    /// Forward each chunk after this delay.
    Delay(Duration),
    /// Read and drop them; connect nothing new upstream.
    BlackHole,
}

#[derive(Debug)]
struct State {
    upstream: Mutex<SocketAddr>,
    mode: watch::Sender<Mode>,
    connections: Mutex<HashMap<u64, AbortHandle>>,
    next_id: AtomicU64,
}

/// A running proxy (stopped when dropped).
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: AbortHandle,
}

impl Proxy {
    /// A proxy on a free port of 127.0.0.1, to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            upstream: Mutex::new(upstream),
            mode: watch::channel(Mode::Pass).0,
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, state.clone())).abort_handle();
        Ok(Proxy { addr, state, accept })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends new connections to `upstream` (existing ones keep theirs).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.state.upstream.lock().unwrap_or_else(|e| e.into_inner()) = upstream;
    }

    /// Changes what happens to the bytes, on every connection at once.
    pub fn set_mode(&self, mode: Mode) {
        self.state.mode.send_replace(mode);
    }

    /// Resets every connection it carries (RST to both sides).
    pub fn reset_all(&self) {
        let connections: Vec<AbortHandle> = {
            let mut map = self.state.connections.lock().unwrap_or_else(|e| e.into_inner());
            map.drain().map(|(_, h)| h).collect()
        };
        for handle in connections {
            handle.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.reset_all();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let id = state.next_id.fetch_add(1, Ordering::Relaxed);
        let task_state = state.clone();
        let handle = tokio::spawn(async move {
            carry(client, &task_state).await;
            task_state.connections.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        });
        state
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, handle.abort_handle());
    }
}

/// Carries one connection until either side closes or the task is aborted. Linger 0 on both
/// sockets: dropping them (an abort) sends RST, not FIN.
async fn carry(client: TcpStream, state: &State) {
    let _ = client.set_nodelay(true);
    let _ = set_reset_on_close(&client);
    let mut mode = state.mode.subscribe();
    // A black hole does not even connect: what a partitioned server looks like.
    while *mode.borrow_and_update() == Mode::BlackHole {
        if mode.changed().await.is_err() {
            return;
        }
    }
    let upstream = *state.upstream.lock().unwrap_or_else(|e| e.into_inner());
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let _ = server.set_nodelay(true);
    let _ = set_reset_on_close(&server);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, state.mode.subscribe());
    let down = pump(sr, cw, state.mode.subscribe());
    // When one direction ends, the connection is over.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

#[allow(deprecated)] // `set_linger` is what we want here: an abrupt close (RST) on drop.
fn set_reset_on_close(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_linger(Some(Duration::ZERO))
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let current = *mode.borrow();
        match current {
            Mode::Pass => {}
            Mode::Delay(d) => tokio::time::sleep(d).await,
            Mode::BlackHole => continue,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
