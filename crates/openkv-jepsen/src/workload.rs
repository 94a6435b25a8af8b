//! The workloads: what each client does, recorded as a history, and the final read each
//! checker needs. Every operation is built from [`Request`]s, so it runs on any topology.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use openkv::{Key, KeyPart};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::checker::append::{AppendCall, AppendRet, Micro};
use crate::checker::bank::{BankCall, BankRet};
use crate::checker::linear::{check_register, RegCall, RegRet, Verdict};
use crate::checker::queue::{Deliveries, Enqueue, POISON_ATTEMPTS};
use crate::checker::stamps::{StampCall, StampRet};
use crate::checker::{append, bank, queue, stamps, Anomaly, AnomalyKind};
use crate::history::{Counts, Outcome, Recorder};
use crate::ops::{key, Exec, Got, OpError, Part, Range, Request, Response, Val};

/// A workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Workload {
    /// Per-key read, write and compare-and-set; checked for linearizability.
    Registers,
    /// Transfers between accounts with checks; every snapshot must add up.
    Bank,
    /// Transactions appending to lists; checked for strict serializability (Elle-style).
    Append,
    /// Commits of fresh keys; versionstamps unique, increasing, shared, and nothing lost.
    Stamps,
    /// Enqueued messages, listeners killed and restarted: at least once, dead letters only
    /// after the schedule.
    Queue,
}

impl Workload {
    /// Every workload.
    pub const ALL: [Workload; 5] =
        [Workload::Registers, Workload::Bank, Workload::Append, Workload::Stamps, Workload::Queue];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Registers => "registers",
            Workload::Bank => "bank",
            Workload::Append => "append",
            Workload::Stamps => "stamps",
            Workload::Queue => "queue",
        }
    }

    /// The workload called `name`.
    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// Bank accounts, and what each starts with.
pub const ACCOUNTS: usize = 5;
const OPENING_BALANCE: u64 = 100;
/// Register keys in use at once, and operations per key before moving to a fresh key (a
/// bounded history per key keeps the linearizability search cheap).
const REGISTER_SLOTS: u64 = 4;
const OPS_PER_REGISTER: u64 = 60;
/// The search budget per register history.
const SEARCH_BUDGET: u64 = 5_000_000;
/// Append keys in use at once, and transactions per key before a fresh one.
const APPEND_SLOTS: u64 = 6;
const TXNS_PER_LIST: u64 = 120;

/// A history of one workload, while clients run.
#[derive(Debug)]
pub enum Recording {
    /// Registers, keyed by register id.
    Registers(Recorder<(u64, RegCall), RegRet>),
    /// The bank.
    Bank(Recorder<BankCall, BankRet>),
    /// List append.
    Append(Recorder<AppendCall, AppendRet>),
    /// Versionstamps.
    Stamps(Recorder<StampCall, StampRet>),
    /// Queues: the enqueues, and what listeners saw.
    Queue(Recorder<Enqueue, ()>, Arc<Mutex<Deliveries>>),
}

/// State the clients of one workload share: counters that make keys and values unique.
#[derive(Debug, Default)]
pub struct Shared {
    slots: [AtomicU64; 8],
    next: AtomicU64,
}

impl Shared {
    fn unique(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The id of the key the next operation on `slot` uses (a fresh key every `per_key`).
    fn key_id(&self, slot: u64, slots: u64, per_key: u64) -> u64 {
        let n = self.slots[slot as usize].fetch_add(1, Ordering::Relaxed);
        slot + slots * (n / per_key)
    }
}

/// What a client needs.
pub struct ClientCtx {
    /// Its number (unique across the run's workloads).
    pub id: usize,
    /// Its seed.
    pub seed: u64,
    /// Where it sends requests.
    pub exec: Arc<dyn Exec>,
    /// May it ask for eventual reads (a topology with a replica)?
    pub eventual: bool,
    /// Stop invoking operations after this.
    pub deadline: Instant,
    /// Pause this long after every operation.
    pub throttle: Option<std::time::Duration>,
}

fn reg_key(id: u64) -> Vec<u8> {
    key(&[Part::S("reg"), Part::I(id as i64)])
}
fn bank_key(account: usize) -> Vec<u8> {
    key(&[Part::S("bank"), Part::I(account as i64)])
}
fn list_key(id: u64) -> Vec<u8> {
    key(&[Part::S("app"), Part::I(id as i64)])
}
fn stamp_key(id: u64) -> Vec<u8> {
    key(&[Part::S("st"), Part::I(id as i64)])
}

/// The integer last part of an encoded workload key.
fn key_id(encoded: &[u8]) -> Option<u64> {
    let key = Key::decode(encoded).ok()?;
    match key.parts().last()? {
        KeyPart::Int(i) => u64::try_from(i).ok(),
        _ => None,
    }
}

async fn read(
    exec: &dyn Exec,
    ranges: Vec<Range>,
    eventual: bool,
) -> Result<Vec<Vec<Got>>, OpError> {
    match exec.exec(Request::Read { ranges, eventual }).await? {
        Response::Read(r) => Ok(r),
        other => Err(OpError::Failed(format!("a read answered {other:?}"))),
    }
}

/// Commits; `Ok(None)` is a failed check.
async fn commit(
    exec: &dyn Exec,
    checks: Vec<(Vec<u8>, Option<[u8; 10]>)>,
    sets: Vec<(Vec<u8>, Val)>,
) -> Result<Option<[u8; 10]>, OpError> {
    match exec.exec(Request::Commit { checks, sets }).await? {
        Response::Committed(s) => Ok(Some(s)),
        Response::CheckFailed => Ok(None),
        Response::Read(_) => Err(OpError::Unknown("a commit answered with entries".into())),
    }
}

fn outcome_of<R>(result: Result<R, OpError>) -> Outcome<R> {
    match result {
        Ok(r) => Outcome::Ok(r),
        Err(e) => {
            if std::env::var_os("OPENKV_JEPSEN_DEBUG").is_some() {
                eprintln!("openkv-jepsen: {e:?}");
            }
            match e {
                OpError::Failed(_) => Outcome::Fail,
                OpError::Unknown(_) => Outcome::Info,
            }
        }
    }
}

/// Records an operation's end; true if it succeeded.
fn record<C, R>(
    rec: &Recorder<C, R>,
    client: usize,
    invoke: u64,
    call: C,
    result: Result<R, OpError>,
) -> bool {
    let outcome = outcome_of(result);
    let ok = matches!(outcome, Outcome::Ok(_));
    rec.record(client, invoke, call, outcome);
    ok
}

/// Every entry under `prefix`, strongly, page by page.
pub async fn read_all(exec: &dyn Exec, prefix: &[u8]) -> Result<Vec<Got>, OpError> {
    let mut all = Vec::new();
    let mut range = Range::prefix(prefix, 500);
    loop {
        let page = read(exec, vec![range.clone()], false).await?.pop().unwrap_or_default();
        let Some(last) = page.last() else { return Ok(all) };
        let mut after = last.key.clone();
        after.push(0);
        let full = page.len() == range.limit as usize;
        all.extend(page);
        if !full {
            return Ok(all);
        }
        range.start = after;
    }
}

/// Writes what a workload needs before its clients start (the bank's opening balances).
pub async fn setup(workload: Workload, exec: &dyn Exec) -> Result<(), OpError> {
    if workload == Workload::Bank {
        let sets = (0..ACCOUNTS).map(|a| (bank_key(a), Val::U64(OPENING_BALANCE))).collect();
        commit(exec, vec![], sets).await?;
    }
    Ok(())
}

impl Recording {
    /// An empty history of `workload`.
    pub fn new(workload: Workload, start: Instant) -> Recording {
        match workload {
            Workload::Registers => Recording::Registers(Recorder::new(start)),
            Workload::Bank => Recording::Bank(Recorder::new(start)),
            Workload::Append => Recording::Append(Recorder::new(start)),
            Workload::Stamps => Recording::Stamps(Recorder::new(start)),
            Workload::Queue => Recording::Queue(Recorder::new(start), Arc::default()),
        }
    }

    /// Runs one client until its deadline.
    pub async fn run_client(&self, shared: &Shared, ctx: ClientCtx) {
        let mut rng = StdRng::seed_from_u64(ctx.seed);
        let exec = &*ctx.exec;
        while Instant::now() < ctx.deadline {
            let ok = match self {
                Recording::Registers(rec) => register_op(rec, shared, &ctx, &mut rng, exec).await,
                Recording::Bank(rec) => bank_op(rec, &ctx, &mut rng, exec).await,
                Recording::Append(rec) => append_op(rec, shared, &ctx, &mut rng, exec).await,
                Recording::Stamps(rec) => stamps_op(rec, shared, &ctx, &mut rng, exec).await,
                Recording::Queue(rec, _) => enqueue_op(rec, shared, &ctx, &mut rng, exec).await,
            };
            if let Some(pause) = ctx.throttle {
                tokio::time::sleep(pause).await;
            }
            if !ok {
                // Back off a little after a failure, as a real client would: a client that
                // spins against a dead server fills the history with noise (and the
                // linearizability search with unknown writes).
                let pause = rng.random_range(10..60);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
        }
    }

    /// After every fault healed: the final read, then the checker. Returns the outcome counts
    /// and the anomalies.
    pub async fn check(self, exec: &dyn Exec) -> Result<(Counts, Vec<Anomaly>), OpError> {
        Ok(match self {
            Recording::Registers(rec) => {
                let ops = rec.into_ops();
                let counts = Counts::of(&ops);
                let mut by_key: BTreeMap<u64, Vec<_>> = BTreeMap::new();
                for op in ops {
                    let crate::history::Op { client, invoke, complete, call, outcome } = op;
                    let entry =
                        crate::history::Op { client, invoke, complete, call: call.1, outcome };
                    by_key.entry(call.0).or_default().push(entry);
                }
                let mut anomalies = Vec::new();
                for (id, history) in &by_key {
                    match check_register(history, SEARCH_BUDGET) {
                        Verdict::Linearizable => {}
                        Verdict::NotLinearizable { stuck_at } => {
                            anomalies.push(Anomaly::new(
                                AnomalyKind::NotLinearizable,
                                format!(
                                    "register {id}: no linearization of its {} operations reaches \
                                     the return of {:?}; history: {}",
                                    history.len(),
                                    history[stuck_at],
                                    describe_registers(history)
                                ),
                            ));
                        }
                        Verdict::Undecided => anomalies.push(Anomaly::new(
                            AnomalyKind::Undecided,
                            format!(
                                "register {id}: {} operations, search budget spent",
                                history.len()
                            ),
                        )),
                    }
                }
                (counts, anomalies)
            }
            Recording::Bank(rec) => {
                // The final snapshot is checked like any other.
                let invoke = rec.now();
                let call = BankCall::Read { by_range: true, eventual: false };
                let result = bank_read(exec, true, false).await;
                rec.record(usize::MAX, invoke, call, outcome_of(result.map(BankRet::Balances)));
                let ops = rec.into_ops();
                if !matches!(ops.last().map(|o| &o.outcome), Some(Outcome::Ok(_))) {
                    return Err(OpError::Failed("the final read of the bank failed".into()));
                }
                let total = OPENING_BALANCE * ACCOUNTS as u64;
                (Counts::of(&ops), bank::check(&ops, ACCOUNTS, total))
            }
            Recording::Append(rec) => {
                let mut finals = BTreeMap::new();
                for got in read_all(exec, &key(&[Part::S("app")])).await? {
                    let id = key_id(&got.key)
                        .ok_or_else(|| OpError::Failed(format!("a stray key {:?}", got.key)))?;
                    finals.insert(id, decode_list(&got.value));
                }
                let ops = rec.into_ops();
                (Counts::of(&ops), append::check(&ops, &finals))
            }
            Recording::Stamps(rec) => {
                let mut finals = BTreeMap::new();
                for got in read_all(exec, &key(&[Part::S("st")])).await? {
                    let id = key_id(&got.key)
                        .ok_or_else(|| OpError::Failed(format!("a stray key {:?}", got.key)))?;
                    finals.insert(id, got.versionstamp);
                }
                let ops = rec.into_ops();
                (Counts::of(&ops), stamps::check(&ops, &finals))
            }
            Recording::Queue(rec, deliveries) => {
                let mut deliveries = deliveries.lock().unwrap_or_else(|e| e.into_inner()).clone();
                deliveries.dead = dead_letters(exec).await?;
                let ops = rec.into_ops();
                (Counts::of(&ops), queue::check(&ops, &deliveries))
            }
        })
    }

    /// For the queue workload: the listeners' record, and whether everything acknowledged
    /// has been handled (or, for poison, dead-lettered) — the queue has drained.
    pub async fn queue_drained(&self, exec: &dyn Exec) -> Option<bool> {
        let Recording::Queue(rec, deliveries) = self else { return None };
        let Ok(dead) = dead_letters(exec).await else { return Some(false) };
        let handled = deliveries.lock().unwrap_or_else(|e| e.into_inner()).handled.clone();
        Some(rec.ops().iter().all(|op| match op.outcome {
            Outcome::Ok(()) if op.call.poison => dead.contains(&op.call.id),
            Outcome::Ok(()) => handled.contains(&op.call.id),
            _ => true,
        }))
    }

    /// For the queue workload: how many attempts its listeners started so far.
    pub fn queue_progress(&self) -> u64 {
        match self {
            Recording::Queue(_, d) => d
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .attempts
                .values()
                .map(|n| u64::from(*n))
                .sum(),
            _ => 0,
        }
    }

    /// For the queue workload: the record its listeners' handler writes to.
    pub fn deliveries(&self) -> Option<Arc<Mutex<Deliveries>>> {
        match self {
            Recording::Queue(_, deliveries) => Some(deliveries.clone()),
            _ => None,
        }
    }
}

/// The messages at their dead-letter keys.
async fn dead_letters(exec: &dyn Exec) -> Result<BTreeSet<u64>, OpError> {
    let mut dead = BTreeSet::new();
    for got in read_all(exec, &key(&[Part::S("dlq")])).await? {
        dead.insert(
            key_id(&got.key)
                .ok_or_else(|| OpError::Failed(format!("a stray key {:?}", got.key)))?,
        );
    }
    Ok(dead)
}

/// The message text of message `id`.
fn message_text(id: u64, poison: bool) -> String {
    format!("jepsen-{id}{}", if poison { "-poison" } else { "" })
}

/// A queue listener's handler: records the attempt, fails poison messages, records the rest
/// as handled. With `drop_some` (the [`Bug::DropMessages`](crate::Bug::DropMessages) bug) it
/// acknowledges one message in twenty without recording it.
pub fn queue_handler(
    deliveries: Arc<Mutex<Deliveries>>,
    drop_some: bool,
) -> impl Fn(openkv::QueueMessage) -> std::future::Ready<Result<(), String>> + Send + Sync + 'static
{
    move |message| {
        let text: String = match message.value.decode() {
            Ok(t) => t,
            Err(e) => return std::future::ready(Err(format!("not a workload message: {e}"))),
        };
        let body = text.strip_prefix("jepsen-").unwrap_or_default();
        let (number, poison) = match body.strip_suffix("-poison") {
            Some(n) => (n, true),
            None => (body, false),
        };
        // A message that is not ours is recorded as id u64::MAX: a phantom.
        let id: u64 = number.parse().unwrap_or(u64::MAX);
        if drop_some && id % 20 == 0 {
            return std::future::ready(Ok(()));
        }
        let mut d = deliveries.lock().unwrap_or_else(|e| e.into_inner());
        *d.attempts.entry(id).or_default() += 1;
        if poison {
            return std::future::ready(Err("poison".to_owned()));
        }
        d.handled.insert(id);
        std::future::ready(Ok(()))
    }
}

async fn enqueue_op(
    rec: &Recorder<Enqueue, ()>,
    shared: &Shared,
    ctx: &ClientCtx,
    rng: &mut StdRng,
    exec: &dyn Exec,
) -> bool {
    let id = shared.unique();
    let poison = rng.random_bool(0.1);
    // Poison gets POISON_ATTEMPTS attempts, 50 ms apart; the rest a schedule long enough
    // that listener kills cannot exhaust it.
    let backoff_ms = if poison { vec![50; POISON_ATTEMPTS as usize - 1] } else { vec![200; 10] };
    let request = Request::Enqueue {
        message: message_text(id, poison),
        backoff_ms,
        dead_letter: key(&[Part::S("dlq"), Part::I(id as i64)]),
    };
    let invoke = rec.now();
    let result = match exec.exec(request).await {
        Ok(Response::Committed(_)) => Ok(()),
        Ok(other) => Err(OpError::Unknown(format!("an enqueue answered {other:?}"))),
        Err(e) => Err(e),
    };
    let ok = record(rec, ctx.id, invoke, Enqueue { id, poison }, result);
    // A producer, not a flood: the listeners must keep up for the queue to drain.
    tokio::time::sleep(std::time::Duration::from_millis(rng.random_range(10..40))).await;
    ok
}

fn describe_registers(history: &[crate::history::Op<RegCall, RegRet>]) -> String {
    let mut sorted: Vec<_> = history.iter().collect();
    sorted.sort_by_key(|o| o.invoke);
    let lines: Vec<String> = sorted
        .iter()
        .take(80)
        .map(|o| {
            let end = o.complete.map_or("?".to_owned(), |c| format!("{:.3}", c as f64 / 1e6));
            format!(
                "[c{} {:.3}..{end} ms {:?} -> {:?}]",
                o.client,
                o.invoke as f64 / 1e6,
                o.call,
                o.outcome
            )
        })
        .collect();
    lines.join(" ")
}

async fn register_op(
    rec: &Recorder<(u64, RegCall), RegRet>,
    shared: &Shared,
    ctx: &ClientCtx,
    rng: &mut StdRng,
    exec: &dyn Exec,
) -> bool {
    let slot = rng.random_range(0..REGISTER_SLOTS);
    let id = shared.key_id(slot, REGISTER_SLOTS, OPS_PER_REGISTER);
    let k = reg_key(id);
    let call = match rng.random_range(0..10) {
        0..=3 => RegCall::Read,
        4..=6 => RegCall::Write(shared.unique()),
        // Most compare-and-sets expect the value a read just returned.
        _ => {
            let current =
                read(exec, vec![Range::point(&k)], false).await.ok().and_then(|r| {
                    match r.first()?.first()?.value {
                        Val::U64(n) => Some(n),
                        Val::Bytes(_) => None,
                    }
                });
            let from = match current {
                Some(v) if rng.random_bool(0.8) => v,
                _ => shared.unique(),
            };
            RegCall::Cas(from, shared.unique())
        }
    };
    let invoke = rec.now();
    let result = match call {
        RegCall::Read => read(exec, vec![Range::point(&k)], false).await.map(|r| {
            RegRet::Read(r.first().and_then(|e| e.first()).and_then(|g| match g.value {
                Val::U64(n) => Some(n),
                Val::Bytes(_) => None,
            }))
        }),
        RegCall::Write(v) => {
            commit(exec, vec![], vec![(k.clone(), Val::U64(v))]).await.map(|_| RegRet::Written)
        }
        RegCall::Cas(from, to) => match read(exec, vec![Range::point(&k)], false).await {
            Err(e) => Err(e),
            Ok(r) => match r.first().and_then(|e| e.first()) {
                Some(g) if g.value == Val::U64(from) => {
                    let checks = vec![(k.clone(), Some(g.versionstamp))];
                    commit(exec, checks, vec![(k.clone(), Val::U64(to))])
                        .await
                        .map(|s| RegRet::Cas(s.is_some()))
                }
                _ => Ok(RegRet::Cas(false)),
            },
        },
    };
    record(rec, ctx.id, invoke, (id, call), result)
}

async fn bank_read(
    exec: &dyn Exec,
    by_range: bool,
    eventual: bool,
) -> Result<Vec<Option<u64>>, OpError> {
    let keys: Vec<Vec<u8>> = (0..ACCOUNTS).map(bank_key).collect();
    let ranges = if by_range {
        vec![Range::prefix(&key(&[Part::S("bank")]), 100)]
    } else {
        keys.iter().map(|k| Range::point(k)).collect()
    };
    let mut balances = vec![None; ACCOUNTS];
    for got in read(exec, ranges, eventual).await?.into_iter().flatten() {
        let Some(a) = keys.iter().position(|k| *k == got.key) else {
            return Err(OpError::Failed(format!("a stray bank key {:?}", got.key)));
        };
        balances[a] = match got.value {
            Val::U64(n) => Some(n),
            Val::Bytes(_) => None,
        };
    }
    Ok(balances)
}

async fn bank_op(
    rec: &Recorder<BankCall, BankRet>,
    ctx: &ClientCtx,
    rng: &mut StdRng,
    exec: &dyn Exec,
) -> bool {
    // Even clients transfer, odd ones read: both go on all the time.
    if ctx.id % 2 == 1 {
        let (by_range, eventual) = (rng.random_bool(0.5), ctx.eventual && rng.random_bool(0.7));
        let call = BankCall::Read { by_range, eventual };
        let invoke = rec.now();
        let result = bank_read(exec, by_range, eventual).await.map(BankRet::Balances);
        return record(rec, ctx.id, invoke, call, result);
    }
    let from = rng.random_range(0..ACCOUNTS);
    let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
    let amount = rng.random_range(1..=20);
    let call = BankCall::Transfer { from, to, amount };
    let invoke = rec.now();
    let (kf, kt) = (bank_key(from), bank_key(to));
    let result = async {
        let r = read(exec, vec![Range::point(&kf), Range::point(&kt)], false).await?;
        let (Some(f), Some(t)) = (r[0].first(), r[1].first()) else {
            return Err(OpError::Failed("an account is missing".into()));
        };
        let (Val::U64(fb), Val::U64(tb)) = (&f.value, &t.value) else {
            return Err(OpError::Failed("an account is not a KvU64".into()));
        };
        if *fb < amount {
            return Ok(BankRet::Insufficient);
        }
        let checks = vec![(kf.clone(), Some(f.versionstamp)), (kt.clone(), Some(t.versionstamp))];
        let sets = vec![(kf.clone(), Val::U64(fb - amount)), (kt.clone(), Val::U64(tb + amount))];
        match commit(exec, checks, sets).await? {
            Some(_) => Ok(BankRet::Transferred),
            None => Err(OpError::Failed("check failed".into())),
        }
    }
    .await;
    record(rec, ctx.id, invoke, call, result)
}

fn decode_list(value: &Val) -> Vec<u64> {
    match value {
        // A list the checker cannot read is reported as a phantom element.
        Val::Bytes(b) => serde_json::from_slice(b).unwrap_or_else(|_| vec![u64::MAX]),
        Val::U64(_) => vec![u64::MAX],
    }
}

async fn append_op(
    rec: &Recorder<AppendCall, AppendRet>,
    shared: &Shared,
    ctx: &ClientCtx,
    rng: &mut StdRng,
    exec: &dyn Exec,
) -> bool {
    let eventual = ctx.eventual && rng.random_bool(0.3);
    let n = rng.random_range(1..=3);
    let mut slots: Vec<u64> = (0..APPEND_SLOTS).collect();
    let mut micro = Vec::new();
    for _ in 0..n {
        let slot = slots.swap_remove(rng.random_range(0..slots.len()));
        let id = shared.key_id(slot, APPEND_SLOTS, TXNS_PER_LIST);
        micro.push(if eventual || rng.random_bool(0.5) {
            Micro::Read(id)
        } else {
            Micro::Append(id, shared.unique())
        });
    }
    let call = AppendCall { micro, eventual };
    let invoke = rec.now();
    let result = async {
        let ids: Vec<u64> = call
            .micro
            .iter()
            .map(|m| match m {
                Micro::Append(k, _) | Micro::Read(k) => *k,
            })
            .collect();
        let ranges = ids.iter().map(|id| Range::point(&list_key(*id))).collect();
        let snapshot = read(exec, ranges, eventual).await?;
        let mut reads = Vec::new();
        let mut checks = Vec::new();
        let mut sets = Vec::new();
        for (m, got) in call.micro.iter().zip(&snapshot) {
            let got = got.first();
            let list = got.map(|g| decode_list(&g.value)).unwrap_or_default();
            let k = match m {
                Micro::Read(id) => {
                    reads.push((*id, list));
                    list_key(*id)
                }
                Micro::Append(id, v) => {
                    let mut longer = list;
                    longer.push(*v);
                    let bytes = serde_json::to_vec(&longer).unwrap_or_default();
                    sets.push((list_key(*id), Val::Bytes(bytes)));
                    list_key(*id)
                }
            };
            checks.push((k, got.map(|g| g.versionstamp)));
        }
        if sets.is_empty() {
            return Ok(reads);
        }
        match commit(exec, checks, sets).await? {
            Some(_) => Ok(reads),
            None => Err(OpError::Failed("check failed".into())),
        }
    }
    .await;
    record(rec, ctx.id, invoke, call, result)
}

async fn stamps_op(
    rec: &Recorder<StampCall, StampRet>,
    shared: &Shared,
    ctx: &ClientCtx,
    rng: &mut StdRng,
    exec: &dyn Exec,
) -> bool {
    let keys: Vec<u64> = (0..rng.random_range(1..=3)).map(|_| shared.unique()).collect();
    let sets =
        keys.iter().map(|id| (stamp_key(*id), Val::Bytes(id.to_be_bytes().to_vec()))).collect();
    let call = StampCall { keys };
    let invoke = rec.now();
    let result = match commit(exec, vec![], sets).await {
        Ok(Some(stamp)) => Ok(stamp),
        Ok(None) => Err(OpError::Unknown("a commit without checks failed a check".into())),
        Err(e) => Err(e),
    };
    record(rec, ctx.id, invoke, call, result)
}
