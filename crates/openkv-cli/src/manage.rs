//! `openkv db …` and `openkv token …`: a server of many databases (`openkv serve
//! --data-dir`) managed through its admin API (`/admin/…`), with an admin token; and the
//! per-database figures `openkv info` shows for such a server.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::db::DbArgs;
use crate::exit::{CliError, CliResult};

/// `openkv db`'s subcommands.
#[derive(clap::Subcommand)]
pub enum DbCommand {
    /// Create an empty database NAME (a-z, 0-9 and -, starting with a letter; at most 40);
    /// clients reach it at <server>/databases/NAME/connect.
    Create {
        /// The new database's name.
        name: String,
    },
    /// List the databases the token reaches, with their figures.
    List(JsonFlag),
    /// Show one database's figures: entries, latest versionstamp, id, URL.
    Info {
        /// The database.
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Delete a database and its data, for good: its open connections and watch streams end.
    Delete {
        /// The database.
        name: String,
        /// Confirm that the data goes for good.
        #[arg(long)]
        yes: bool,
    },
}

/// `openkv token`'s subcommands.
#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token; prints it on stdout, once (the server keeps only its hash).
    Create(TokenCreateArgs),
    /// List the tokens (ids, reach, scope, state; never secrets).
    List(JsonFlag),
    /// Revoke a token by id: every server on the same data directory refuses it within
    /// seconds.
    Revoke {
        /// The token's id (the 12 hex digits after `okv_`).
        id: String,
    },
}

/// `--json`: print the server's JSON answer instead of a table.
#[derive(clap::Args)]
pub struct JsonFlag {
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
}

/// `openkv token create`'s options.
#[derive(clap::Args)]
pub struct TokenCreateArgs {
    /// A database the token reaches (repeatable).
    #[arg(long = "database", value_name = "NAME", required_unless_present = "all_databases")]
    databases: Vec<String>,
    /// The token reaches every database, present and future.
    #[arg(long, conflicts_with = "databases")]
    all_databases: bool,
    /// read (reads, watches), write (+ writes and queues) or admin (+ backup, restore and,
    /// with --all-databases, managing databases and tokens).
    #[arg(long, value_parser = ["read", "write", "admin"])]
    scope: String,
    /// The token stops working after this long (30d, 12h, …); default: never.
    #[arg(long, value_name = "DURATION", value_parser = crate::db::positive_duration)]
    expires_in: Option<humantime::Duration>,
    /// A note for people (who or what the token is for).
    #[arg(long, default_value = "")]
    description: String,
}

/// The admin API of the server `--db` names.
struct Admin {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Admin {
    fn new(db: &DbArgs) -> CliResult<Admin> {
        let url = db.db.as_deref().unwrap_or_default();
        let Some(base) = origin(url) else {
            return Err(CliError::Usage(
                "managing databases and tokens needs --db <the server's http(s):// URL>".into(),
            ));
        };
        let token = db
            .access_token
            .clone()
            .or_else(|| std::env::var("DENO_KV_ACCESS_TOKEN").ok())
            .ok_or_else(|| {
                CliError::Usage(
                    "an admin token is needed: pass --access-token or set OPENKV_ACCESS_TOKEN"
                        .into(),
                )
            })?;
        // --timeout bounds reaching the server; an answer may take longer (a listing counts
        // every database's entries).
        let mut http = reqwest::Client::builder()
            .connect_timeout(*db.timeout)
            .timeout(Duration::from_secs(300));
        if let Some(pem) = &db.ca_cert {
            let pem = std::fs::read(pem)
                .map_err(|e| CliError::io(format!("cannot read {}", pem.display()), e))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| CliError::Usage(format!("--ca-cert: {e}")))?;
            http = http.add_root_certificate(cert);
        }
        let http = http.build().map_err(|e| CliError::Runtime(format!("no HTTP client: {e}")))?;
        Ok(Admin { base, token, http })
    }

    /// Sends a request: the JSON answer of a 2xx, the server's refusal as an error otherwise.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> CliResult<Value> {
        match self.call_raw(method, path, body).await? {
            (status, text) if status.is_success() => serde_json::from_str(&text).map_err(|e| {
                CliError::Runtime(format!("the server's answer is not JSON ({e}): {text}"))
            }),
            (status, text) => Err(refused(status, text.trim())),
        }
    }

    async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> CliResult<(StatusCode, String)> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| CliError::Runtime(format!("cannot reach {url}: {e}")))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| CliError::Runtime(format!("reading the answer of {url}: {e}")))?;
        Ok((status, text))
    }
}

/// A refusal as a CLI error: the server's message, exit 2 for a request the server found
/// malformed (400), else 1.
fn refused(status: StatusCode, message: &str) -> CliError {
    let message = format!("the server refused ({status}): {message}");
    if status == StatusCode::BAD_REQUEST {
        CliError::Usage(message)
    } else {
        CliError::Runtime(message)
    }
}

/// `scheme://host[:port]` of an http(s) URL.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

fn text(value: &Value, field: &str) -> String {
    match &value[field] {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

fn print_database(d: &Value) {
    println!("database:        {}", text(d, "name"));
    println!("url:             {}", text(d, "url"));
    println!("database id:     {}", text(d, "databaseId"));
    println!("live entries:    {}", text(d, "entries"));
    println!("latest entry at: {}", text(d, "latestVersionstamp"));
    println!("size:            {} bytes (WAL {})", text(d, "sizeBytes"), text(d, "walBytes"));
    println!(
        "queue:           {} ready, {} delayed, {} in flight",
        text(d, "queueReady"),
        text(d, "queueDelayed"),
        text(d, "queueInFlight")
    );
}

/// Runs an `openkv db` command.
pub async fn db(args: &DbArgs, command: DbCommand) -> CliResult {
    let admin = Admin::new(args)?;
    match command {
        DbCommand::Create { name } => {
            let created = admin
                .call(Method::POST, "/admin/databases", Some(serde_json::json!({ "name": name })))
                .await?;
            println!("created database {name}: {}{}", admin.base, text(&created, "url"));
        }
        DbCommand::List(JsonFlag { json }) => {
            let answer = admin.call(Method::GET, "/admin/databases", None).await?;
            if json {
                print_json(&answer);
                return Ok(());
            }
            println!("{:<40} {:>12}  {:<20}  URL", "NAME", "ENTRIES", "LATEST VERSIONSTAMP");
            for d in answer["databases"].as_array().into_iter().flatten() {
                println!(
                    "{:<40} {:>12}  {:<20}  {}{}",
                    text(d, "name"),
                    text(d, "entries"),
                    text(d, "latestVersionstamp"),
                    admin.base,
                    text(d, "url")
                );
            }
        }
        DbCommand::Info { name, json } => {
            let answer = admin.call(Method::GET, &format!("/admin/databases/{name}"), None).await?;
            if json.json {
                print_json(&answer);
            } else {
                print_database(&answer);
            }
        }
        DbCommand::Delete { name, yes } => {
            if !yes {
                return Err(CliError::Usage(format!(
                    "deleting {name} removes its data for good: add --yes to go ahead"
                )));
            }
            admin.call(Method::DELETE, &format!("/admin/databases/{name}"), None).await?;
            println!("deleted database {name}");
        }
    }
    Ok(())
}

/// Runs an `openkv token` command.
pub async fn token(args: &DbArgs, command: TokenCommand) -> CliResult {
    let admin = Admin::new(args)?;
    match command {
        TokenCommand::Create(create) => {
            let databases =
                if create.all_databases { vec!["*".to_owned()] } else { create.databases };
            let mut body = serde_json::json!({
                "databases": databases,
                "scope": create.scope,
                "description": create.description,
            });
            if let Some(expires) = create.expires_in {
                // Whole seconds, rounded up: a token never lives shorter than asked.
                let seconds = expires.as_secs() + u64::from(expires.subsec_nanos() > 0);
                body["expiresInSeconds"] = seconds.into();
            }
            let made = admin.call(Method::POST, "/admin/tokens", Some(body)).await?;
            // The secret alone on stdout, for `TOKEN=$(openkv token create …)`; the rest on
            // stderr.
            println!("{}", text(&made, "token"));
            eprintln!(
                "openkv: token {} ({} on {}; expires {}) — shown once, the server keeps only \
                 its hash",
                text(&made, "id"),
                text(&made, "scope"),
                made["databases"].as_array().map_or(String::new(), |d| d
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(",")),
                if made["expiresAt"].is_null() {
                    "never".to_owned()
                } else {
                    text(&made, "expiresAt")
                },
            );
        }
        TokenCommand::List(JsonFlag { json }) => {
            let answer = admin.call(Method::GET, "/admin/tokens", None).await?;
            if json {
                print_json(&answer);
                return Ok(());
            }
            println!(
                "{:<12}  {:<6}  {:<8}  {:<24}  {:<24}  DATABASES  DESCRIPTION",
                "ID", "SCOPE", "STATE", "CREATED", "EXPIRES"
            );
            for t in answer["tokens"].as_array().into_iter().flatten() {
                let databases = t["databases"].as_array().map_or(String::new(), |d| {
                    d.iter().map(|v| v.as_str().unwrap_or_default()).collect::<Vec<_>>().join(",")
                });
                println!(
                    "{:<12}  {:<6}  {:<8}  {:<24}  {:<24}  {databases}  {}",
                    text(t, "id"),
                    text(t, "scope"),
                    text(t, "state"),
                    text(t, "createdAt"),
                    text(t, "expiresAt"),
                    text(t, "description"),
                );
            }
        }
        TokenCommand::Revoke { id } => {
            admin.call(Method::DELETE, &format!("/admin/tokens/{id}"), None).await?;
            println!("revoked token {id}");
        }
    }
    Ok(())
}

/// `openkv info` against a server's root URL: the figures of each database it serves, if it
/// serves many (`Ok(false)`: it has no admin API — a single-database server or denokv — and
/// `info` reads it as one database).
pub async fn info(args: &DbArgs) -> CliResult<bool> {
    let url = args.db.as_deref().unwrap_or_default();
    let Some(base) = origin(url) else { return Ok(false) };
    // A database's own URL (…/databases/NAME/connect) is one database: read it as such.
    if url.trim_end_matches('/') != base {
        return Ok(false);
    }
    let admin = Admin::new(args)?;
    let (status, body) = admin.call_raw(Method::GET, "/admin/databases", None).await?;
    if status == StatusCode::NOT_FOUND {
        return Ok(false);
    }
    if !status.is_success() {
        return Err(refused(status, body.trim()));
    }
    let answer: Value = serde_json::from_str(&body)
        .map_err(|e| CliError::Runtime(format!("the server's answer is not JSON ({e})")))?;
    let databases = answer["databases"].as_array().cloned().unwrap_or_default();
    let plural = if databases.len() == 1 { "" } else { "s" };
    println!("server:          {base} ({} database{plural})", databases.len());
    for d in &databases {
        println!();
        print_database(d);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_api_is_at_the_servers_origin() {
        assert_eq!(origin("http://127.0.0.1:4512").as_deref(), Some("http://127.0.0.1:4512"));
        assert_eq!(
            origin("https://kv.example.com/databases/app/connect").as_deref(),
            Some("https://kv.example.com")
        );
        assert_eq!(origin("data.sqlite3"), None);
        assert_eq!(origin("postgres://u@h/db"), None);
        assert_eq!(origin("http://"), None);
    }
}
