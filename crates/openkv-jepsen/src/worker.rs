//! Embedded worker processes: a process holding an embedded [`Kv`] on a SQLite file, running
//! the requests the runner sends it over its stdin, one JSON line each, and answering on its
//! stdout. Two of them on one file are the "two processes, one file" topology; the nemesis
//! kills and pauses them like servers.
//!
//! The runner starts a worker with [`WORKER_ENV`] set to the database path, running whatever
//! command the caller configured (the `openkv-jepsen` binary runs itself; a test binary runs
//! itself too): that process calls [`worker_main`] first thing.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openkv::Kv;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::ops::{execute, BoxFuture, Exec, OpError, Request, Response};

/// The environment variable that makes a process a worker, naming its database.
pub const WORKER_ENV: &str = "OPENKV_JEPSEN_WORKER";

#[derive(Serialize, Deserialize)]
struct Call {
    id: u64,
    request: Request,
}

#[derive(Serialize, Deserialize)]
struct Answer {
    id: u64,
    result: Result<Response, OpError>,
}

/// If [`WORKER_ENV`] is set, serves requests on the database it names until stdin closes,
/// then exits the process. Returns (doing nothing) otherwise.
pub fn worker_main() {
    let Some(db) = std::env::var_os(WORKER_ENV) else { return };
    let code = match serve(Path::new(&db)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("openkv-jepsen worker: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn serve(db: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let kv = Kv::open(db).await?;
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let writer = tokio::spawn(async move {
            let mut out = tokio::io::stdout();
            while let Some(line) = rx.recv().await {
                if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
                    return;
                }
            }
        });
        tx.send("ready\n".to_owned())?;
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await? {
            let call: Call = serde_json::from_str(&line)?;
            let (kv, tx) = (kv.clone(), tx.clone());
            tokio::spawn(async move {
                let result = execute(&kv, call.request).await;
                let mut line =
                    serde_json::to_string(&Answer { id: call.id, result }).unwrap_or_default();
                line.push('\n');
                let _ = tx.send(line);
            });
        }
        drop(tx);
        let _ = writer.await;
        kv.close().await?;
        Ok(())
    })
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Response, OpError>>>>>;

/// The runner's end of one worker process.
#[derive(Debug)]
pub struct WorkerConn {
    child: Mutex<tokio::process::Child>,
    pid: u32,
    tx: mpsc::UnboundedSender<String>,
    pending: Pending,
    /// False once the worker's stdout ended (it died): no answer will come.
    alive: Arc<AtomicBool>,
    next_id: AtomicU64,
}

impl WorkerConn {
    /// Starts `command` (program and arguments) as a worker on `db`, and waits until it has
    /// opened the database.
    pub async fn start(
        command: &[std::ffi::OsString],
        db: &Path,
        log: &Path,
    ) -> std::io::Result<WorkerConn> {
        let (program, args) =
            command.split_first().ok_or_else(|| std::io::Error::other("empty worker command"))?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env(WORKER_ENV, db)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or_else(|| std::io::Error::other("the worker exited at once"))?;
        let mut stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        match lines.next_line().await? {
            Some(l) if l == "ready" => {}
            other => {
                return Err(std::io::Error::other(format!("the worker said {other:?}, not ready")))
            }
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                if stdin.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        let pending: Pending = Arc::default();
        let answers = pending.clone();
        let alive = Arc::new(AtomicBool::new(true));
        let still = alive.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(answer) = serde_json::from_str::<Answer>(&line) else { continue };
                let waiter = answers.lock().unwrap_or_else(|e| e.into_inner()).remove(&answer.id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(answer.result);
                }
            }
            // The worker is gone: whatever it was doing may or may not have happened. (Marked
            // dead first: a request registered after the drain sees it and is never sent.)
            still.store(false, Ordering::SeqCst);
            let orphans: Vec<_> =
                answers.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
            for (_, waiter) in orphans {
                let _ = waiter.send(Err(OpError::Unknown("the worker process died".into())));
            }
        });
        Ok(WorkerConn {
            child: Mutex::new(child),
            pid,
            tx,
            pending,
            alive,
            next_id: AtomicU64::new(0),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// SIGKILL.
    pub fn kill(&self) {
        let _ = self.child.lock().unwrap_or_else(|e| e.into_inner()).start_kill();
    }
}

impl Exec for WorkerConn {
    fn exec(&self, request: Request) -> BoxFuture<'_, Result<Response, OpError>> {
        Box::pin(async move {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
            if !self.alive.load(Ordering::SeqCst) {
                self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                return Err(OpError::Failed("the worker process is dead".into()));
            }
            let mut line = serde_json::to_string(&Call { id, request })
                .map_err(|e| OpError::Failed(format!("cannot encode the request: {e}")))?;
            line.push('\n');
            if self.tx.send(line).is_err() {
                self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                return Err(OpError::Failed("the worker's stdin is closed".into()));
            }
            rx.await.unwrap_or_else(|_| Err(OpError::Unknown("the worker process died".into())))
        })
    }
}
