//! The data commands: `get`, `set`, `delete`, `list`, `count`, `watch`.

use std::io::{Read, Write};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use futures::{StreamExt, TryStreamExt};
use openkv::{Consistency, Key, Kv, ListOptions, Selector, Value};
use serde_json::Value as Json;

use crate::db::{Access, DbArgs};
use crate::exit::{CliError, CliResult};
use crate::output::{entry_json, flush, write_line, write_out};
use openkv::key::syntax::{format_key, parse_key};

/// Parses a key given on the command line; `what` names the argument in the message.
pub fn key_arg(what: &str, text: &str) -> CliResult<Key> {
    parse_key(text).map_err(|e| CliError::Usage(format!("invalid {what} {text}: {e}")))
}

/// Parses the keys given as positional arguments.
fn key_args(texts: &[String]) -> CliResult<Vec<Key>> {
    texts.iter().map(|k| key_arg("key", k)).collect()
}

/// `--consistency`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum ConsistencyArg {
    /// See every write acknowledged before the read.
    #[default]
    Strong,
    /// May be served by a lagging replica (the same as strong on a SQLite file).
    Eventual,
}

impl From<ConsistencyArg> for Consistency {
    fn from(c: ConsistencyArg) -> Self {
        match c {
            ConsistencyArg::Strong => Consistency::Strong,
            ConsistencyArg::Eventual => Consistency::Eventual,
        }
    }
}

/// `openkv get`'s options.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// The key, e.g. '["users", 12n]'.
    pub key: String,
    /// Print the value itself instead of its typed JSON: the bytes of a Uint8Array, the text
    /// of a string, the number of a KvU64. Other values are an error.
    #[arg(long, conflicts_with = "entry")]
    pub raw: bool,
    /// Print the whole entry as `list` does: {"key", "value", "versionstamp"}.
    #[arg(long)]
    pub entry: bool,
    /// Read consistency.
    #[arg(long, value_enum, default_value_t)]
    pub consistency: ConsistencyArg,
}

/// `openkv set`'s options.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["value", "u64", "bytes", "bytes_base64"])))]
pub struct SetArgs {
    /// The key, e.g. '["users", 12n]'.
    pub key: String,
    /// The value as JSON, typed JSON tags accepted ({"$bigint": "1"}, {"$date": "…"},
    /// {"$map": […]}, …); `@FILE` reads the JSON from FILE, `-` from stdin. Stored as a V8
    /// value, as Deno stores JavaScript values ({"$kvu64": "1"} and {"$bytes": "…"} at the top
    /// level store a KvU64 and a Uint8Array).
    pub value: Option<String>,
    /// Store a Deno.KvU64 counter.
    #[arg(long, value_name = "N")]
    pub u64: Option<u64>,
    /// Store raw bytes (a Uint8Array) read from FILE (`@FILE`, or `-` for stdin).
    #[arg(long, value_name = "@FILE")]
    pub bytes: Option<String>,
    /// Store raw bytes (a Uint8Array) given in standard base64.
    #[arg(long, value_name = "BASE64")]
    pub bytes_base64: Option<String>,
    /// Let the entry expire after this long (e.g. 10s, 5m, 2h 30m, 1day).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub expire_in: Option<Duration>,
}

/// `openkv delete`'s options.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// The keys to delete (all in one atomic operation); a missing key is not an error.
    #[arg(required = true, num_args = 1..)]
    pub keys: Vec<String>,
}

/// Which keys `list`, `count` and `export` visit (Deno's selectors).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SelectorArgs {
    /// Keys strictly under this prefix (not the prefix itself); default [] (every key).
    #[arg(long, value_name = "KEY")]
    pub prefix: Option<String>,
    /// Only keys >= KEY (with --prefix: a key under it).
    #[arg(long, value_name = "KEY")]
    pub start: Option<String>,
    /// Only keys < KEY (with --prefix: a key under it).
    #[arg(long, value_name = "KEY")]
    pub end: Option<String>,
}

impl SelectorArgs {
    /// The selector: a prefix (`[]` by default) narrowed by --start or --end, or the range
    /// [start, end) when both are given without a prefix.
    pub fn selector(&self) -> CliResult<Selector> {
        let opt = |what: &str, text: &Option<String>| {
            text.as_deref().map(|t| key_arg(what, t)).transpose()
        };
        let prefix = opt("--prefix key", &self.prefix)?;
        let start = opt("--start key", &self.start)?;
        let end = opt("--end key", &self.end)?;
        Ok(match (prefix, start, end) {
            (None, Some(start), Some(end)) => Selector::range(start, end),
            (prefix, start, end) => {
                let mut selector = Selector::prefix(prefix.unwrap_or_default());
                if let Some(start) = start {
                    selector = selector.start(start);
                }
                if let Some(end) = end {
                    selector = selector.end(end);
                }
                selector
            }
        })
    }
}

/// `list`'s output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line: {"key", "value", "versionstamp"}.
    #[default]
    Ndjson,
    /// Aligned columns for people: key, versionstamp, value.
    Table,
}

/// `openkv list`'s options.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub selector: SelectorArgs,
    /// Visit keys in descending order.
    #[arg(long)]
    pub reverse: bool,
    /// Stop after N entries; when more remain, the next cursor is printed on stderr as
    /// `cursor: C`.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Resume after the entry a previous list's cursor points at.
    #[arg(long, value_name = "C")]
    pub cursor: Option<String>,
    /// Print only the keys, one per line, in key syntax.
    #[arg(long)]
    pub keys_only: bool,
    /// Read consistency.
    #[arg(long, value_enum, default_value_t)]
    pub consistency: ConsistencyArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `openkv count`'s options.
#[derive(clap::Args, Debug)]
pub struct CountArgs {
    #[command(flatten)]
    pub selector: SelectorArgs,
    /// Read consistency.
    #[arg(long, value_enum, default_value_t)]
    pub consistency: ConsistencyArg,
}

/// `openkv watch`'s options.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// The keys to follow (1 to 10).
    #[arg(required = true, num_args = 1..)]
    pub keys: Vec<String>,
}

pub async fn get(db: &DbArgs, args: GetArgs) -> CliResult {
    let key = key_arg("key", &args.key)?;
    let kv = db.open(Access::Read).await?;
    let entry = kv
        .get_with(&key, args.consistency.into())
        .await
        .map_err(|e| CliError::kv(format!("cannot read {}", args.key), e))?;
    let Some(entry) = entry else {
        return Err(CliError::NotFound(format!("no entry at {}", format_key(&key))));
    };
    let mut out = std::io::stdout().lock();
    if args.raw {
        let bytes = raw_bytes(&entry.value).map_err(|kind| {
            CliError::Runtime(format!(
                "--raw prints a Uint8Array, a string or a KvU64; {} holds {kind}: drop --raw \
                 for its typed JSON",
                format_key(&key)
            ))
        })?;
        write_out(&mut out, &bytes)?;
    } else if args.entry {
        let line = entry_json(&entry.key, Some((&entry.value, &entry.versionstamp)));
        write_line(&mut out, &line.to_string())?;
    } else {
        let json = openkv::value_to_json(&entry.value).map_err(|e| {
            CliError::Runtime(format!("cannot render the value of {}: {e}", format_key(&key)))
        })?;
        write_line(&mut out, &json.to_string())?;
    }
    flush(&mut out)
}

/// What `get --raw` prints, or the kind of value it refuses.
fn raw_bytes(value: &Value) -> Result<Vec<u8>, String> {
    match value {
        Value::Bytes(b) => Ok(b.clone()),
        Value::U64(n) => Ok(n.to_string().into_bytes()),
        other => match other.to_js() {
            Ok(openkv::JsValue::String(s)) => Ok(s.into_bytes()),
            Ok(js) => Err(format!("a {}", js_kind(&openkv::to_json(&js)))),
            Err(e) => Err(format!("an undecodable value ({e})")),
        },
    }
}

/// "an object", "a number", … from a typed JSON rendering, for messages.
fn js_kind(json: &Json) -> String {
    match json {
        Json::Null => "null".into(),
        Json::Bool(_) => "boolean".into(),
        Json::Number(_) => "number".into(),
        Json::String(_) => "string".into(),
        Json::Array(_) => "array".into(),
        Json::Object(map) => match map.keys().next() {
            Some(tag) if map.len() == 1 && tag.starts_with('$') => tag[1..].to_owned(),
            _ => "object".into(),
        },
    }
}

/// Reads `@FILE` or `-` (stdin).
fn read_source(what: &str, spec: &str) -> CliResult<Vec<u8>> {
    if spec == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map_err(|e| CliError::io("cannot read stdin", e))?;
        return Ok(buf);
    }
    let Some(path) = spec.strip_prefix('@') else {
        return Err(CliError::Usage(format!(
            "{what} takes @FILE (or - for stdin), got {spec:?}; for base64 use --bytes-base64"
        )));
    };
    std::fs::read(path).map_err(|e| CliError::io(format!("cannot read {path}"), e))
}

/// The value `set` stores, from whichever input was given.
fn set_value(args: &SetArgs) -> CliResult<Value> {
    if let Some(n) = args.u64 {
        return Ok(Value::U64(n));
    }
    if let Some(spec) = &args.bytes {
        return read_source("--bytes", spec).map(Value::Bytes);
    }
    if let Some(b64) = &args.bytes_base64 {
        return BASE64.decode(b64.trim()).map(Value::Bytes).map_err(|e| {
            CliError::Usage(format!("--bytes-base64 is not standard padded base64: {e}"))
        });
    }
    // clap requires one of the inputs; this is the last.
    let Some(text) = args.value.as_deref() else {
        return Err(CliError::Usage(
            "give the value: VALUE, --u64, --bytes or --bytes-base64".into(),
        ));
    };
    let (json_text, from) = if text == "-" || text.starts_with('@') {
        let bytes = read_source("the value", text)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| CliError::Runtime(format!("{text} is not UTF-8 text")))?;
        (text, "")
    } else {
        (text.to_owned(), " (quote it for the shell: '\"text\"' is a string)")
    };
    let json: Json = serde_json::from_str(&json_text)
        .map_err(|e| CliError::Usage(format!("the value is not JSON: {e}{from}")))?;
    openkv::value_from_json(&json)
        .map_err(|e| CliError::Usage(format!("the value is not valid typed JSON: {e}")))
}

pub async fn set(db: &DbArgs, args: SetArgs) -> CliResult {
    let key = key_arg("key", &args.key)?;
    let value = set_value(&args)?;
    let kv = db.open(Access::Write).await?;
    let written = match args.expire_in {
        Some(after) => kv.set_with_expiry(&key, value, after).await,
        None => kv.set(&key, value).await,
    };
    let versionstamp = written.map_err(|e| CliError::kv(format!("cannot set {}", args.key), e))?;
    close(&kv).await?;
    let mut out = std::io::stdout().lock();
    write_line(&mut out, &versionstamp.to_hex())?;
    flush(&mut out)
}

pub async fn delete(db: &DbArgs, args: DeleteArgs) -> CliResult {
    let keys = key_args(&args.keys)?;
    let kv = db.open(Access::Write).await?;
    let op = keys.iter().fold(kv.atomic(), |op, key| op.delete(key));
    op.commit().await.map_err(|e| CliError::kv("cannot delete", e))?;
    close(&kv).await
}

/// Closes a database we wrote to, so that its writes are known to be done.
pub async fn close(kv: &Kv) -> CliResult {
    kv.close().await.map_err(|e| CliError::kv("closing the database failed", e))
}

pub async fn list(db: &DbArgs, args: ListArgs) -> CliResult {
    let selector = args.selector.selector()?;
    let mut options = ListOptions::new().reverse(args.reverse).consistency(args.consistency.into());
    if let Some(limit) = args.limit {
        options = options.limit(limit);
    }
    if let Some(cursor) = &args.cursor {
        options = options.cursor(cursor.clone());
    }
    let kv = db.open(Access::Read).await?;
    // `list` checks the selector, cursor and options before reading: a usage error.
    let mut stream =
        kv.list(selector.clone(), options.clone()).map_err(|e| CliError::kv("invalid list", e))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut rows = Vec::new();
    let mut listed = 0usize;
    while let Some(entry) = stream.try_next().await.map_err(|e| CliError::kv("cannot list", e))? {
        listed += 1;
        if args.keys_only {
            write_line(&mut out, &format_key(&entry.key))?;
        } else if args.format == Format::Table {
            let value = openkv::value_to_json(&entry.value)
                .map_or_else(|e| format!("<{e}>"), |j| j.to_string());
            rows.push([format_key(&entry.key), entry.versionstamp.to_hex(), value]);
        } else {
            let line = entry_json(&entry.key, Some((&entry.value, &entry.versionstamp)));
            write_line(&mut out, &line.to_string())?;
        }
    }
    if !rows.is_empty() {
        write_table(&mut out, &["KEY", "VERSIONSTAMP", "VALUE"], &rows)?;
    }
    flush(&mut out)?;
    // The limit stopped the list: tell where to go on if anything is left.
    if args.limit == Some(listed) {
        if let Some(cursor) = stream.cursor().filter(|c| !c.is_empty()) {
            let mut probe = kv
                .list(selector, options.cursor(cursor.clone()).limit(1))
                .map_err(|e| CliError::kv("cannot list", e))?;
            let more = probe.try_next().await.map_err(|e| CliError::kv("cannot list", e))?;
            if more.is_some() {
                eprintln!("cursor: {cursor}");
            }
        }
    }
    Ok(())
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn write_table(
    out: &mut (impl Write + ?Sized),
    header: &[&str; 3],
    rows: &[[String; 3]],
) -> CliResult {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 3]| {
        format!("{:w0$}  {:w1$}  {}", cells[0], cells[1], cells[2], w0 = widths[0], w1 = widths[1])
    };
    write_line(out, line(*header).trim_end())?;
    for row in rows {
        write_line(out, &line([&row[0], &row[1], &row[2]]))?;
    }
    Ok(())
}

pub async fn count(db: &DbArgs, args: CountArgs) -> CliResult {
    let selector = args.selector.selector()?;
    let kv = db.open(Access::Read).await?;
    let options = ListOptions::new().batch_size(1000).consistency(args.consistency.into());
    let stream = kv.list(selector, options).map_err(|e| CliError::kv("invalid selector", e))?;
    let n = stream
        .try_fold(0u64, |n, _| async move { Ok(n + 1) })
        .await
        .map_err(|e| CliError::kv("cannot count", e))?;
    let mut out = std::io::stdout().lock();
    write_line(&mut out, &n.to_string())?;
    flush(&mut out)
}

pub async fn watch(db: &DbArgs, args: WatchArgs) -> CliResult {
    let keys = key_args(&args.keys)?;
    let kv = db.open(Access::Read).await?;
    let mut stream = kv.watch(&keys).map_err(|e| CliError::kv("cannot watch", e))?;
    let mut out = std::io::stdout().lock();
    let stop = crate::signal::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let snapshot = tokio::select! {
            _ = &mut stop => break,
            next = stream.next() => next,
        };
        let Some(snapshot) = snapshot else { break };
        let snapshot = snapshot.map_err(|e| CliError::kv("the watch failed", e))?;
        let line: Vec<Json> = keys
            .iter()
            .zip(&snapshot)
            .map(|(key, e)| entry_json(key, e.as_ref().map(|e| (&e.value, &e.versionstamp))))
            .collect();
        write_line(&mut out, &Json::Array(line).to_string())?;
        flush(&mut out)?;
    }
    drop(stream);
    close(&kv).await
}
