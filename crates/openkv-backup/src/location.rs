//! Where a backup lives: a directory or S3-compatible object storage, behind `object_store`.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use openkv_core::error::{Error, Failure, Result};

/// How to reach S3-compatible storage, besides what the usual AWS environment variables say
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` /
/// `AWS_DEFAULT_REGION`).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct S3Options {
    /// The service's URL, for storage other than AWS (`http://127.0.0.1:9000`): requests use
    /// path-style addressing (`ENDPOINT/bucket/key`), which every S3-compatible server takes.
    /// `None`: AWS itself.
    pub endpoint: Option<String>,
}

impl S3Options {
    /// Options with this endpoint.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }
}

/// A backup location: a store and the prefix (empty, or ending in `/`) its objects live under.
#[derive(Clone)]
pub struct Location {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) prefix: String,
    description: String,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// Object storage answers slowly or not at all: each request gives up after this long and the
/// caller (the shipper's loop, a restore) decides what next, rather than the client retrying
/// for minutes inside one call.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Location {
    /// Parses a location: `s3://bucket/prefix` (a prefix is required: Deploy's readers find a
    /// backup under one), `file:///absolute/dir`, or a directory path (created if missing).
    pub fn parse(text: &str, s3: &S3Options) -> Result<Location> {
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let prefix = prefix.trim_matches('/');
            if bucket.is_empty() || prefix.is_empty() {
                return Err(Error::InvalidOption(format!(
                    "{text}: an S3 location is s3://BUCKET/PREFIX, with a prefix (Deno Deploy's \
                     backup readers, denokv's among them, need one)"
                )));
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if std::env::var_os("AWS_REGION").is_none()
                && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            {
                builder = builder.with_region("us-east-1");
            }
            let mut client = ClientOptions::new()
                .with_timeout(REQUEST_TIMEOUT)
                .with_connect_timeout(CONNECT_TIMEOUT);
            if let Some(endpoint) = &s3.endpoint {
                if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
                    return Err(Error::InvalidOption(format!(
                        "--s3-endpoint {endpoint}: expected an http:// or https:// URL"
                    )));
                }
                client = client.with_allow_http(endpoint.starts_with("http://"));
                builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
            }
            let retry = RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(20),
                ..RetryConfig::default()
            };
            let store =
                builder.with_client_options(client).with_retry(retry).build().map_err(|e| {
                    Error::InvalidOption(format!("{text}: cannot use this S3 location: {e}"))
                })?;
            let description = match &s3.endpoint {
                Some(endpoint) => format!("s3://{bucket}/{prefix}/ at {endpoint}"),
                None => format!("s3://{bucket}/{prefix}/"),
            };
            return Ok(Location {
                store: Arc::new(store),
                prefix: format!("{prefix}/"),
                description,
            });
        }
        let path = match text.strip_prefix("file://") {
            Some(path) if path.starts_with('/') => std::path::PathBuf::from(path),
            Some(_) => {
                return Err(Error::InvalidOption(format!(
                    "{text}: a file:// location names an absolute path (file:///var/backups/db)"
                )))
            }
            None if text.contains("://") => {
                return Err(Error::InvalidOption(format!(
                    "{text}: a backup location is a directory, file:///DIR or s3://BUCKET/PREFIX"
                )))
            }
            None => std::path::PathBuf::from(text),
        };
        if text.is_empty() {
            return Err(Error::InvalidOption("the backup location is empty".into()));
        }
        std::fs::create_dir_all(&path).map_err(|e| {
            Error::Storage(Failure::caused(format_args!("cannot create {}", path.display()), e))
        })?;
        let store = LocalFileSystem::new_with_prefix(&path).map_err(|e| {
            Error::InvalidOption(format!("{}: cannot use this directory: {e}", path.display()))
        })?;
        Ok(Location {
            store: Arc::new(store),
            prefix: String::new(),
            description: path.display().to_string(),
        })
    }

    /// A location over any store (tests, other services): objects go under `prefix`.
    pub fn from_store(store: Arc<dyn ObjectStore>, prefix: &str, description: &str) -> Location {
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        Location { store, prefix, description: description.to_string() }
    }

    /// The store path of an object name (relative to the prefix).
    pub(crate) fn path(&self, name: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{name}", self.prefix))
    }

    /// An object name back from a store path.
    pub(crate) fn name<'a>(&self, path: &'a ObjectPath) -> Option<&'a str> {
        path.as_ref().strip_prefix(self.prefix.as_str())
    }
}

/// Object storage failed (unreachable, refused, a disk error under a directory): a storage
/// error in words, with `object_store`'s error as its source. The shipper retries it; a
/// restore reports it.
pub(crate) fn storage_error(what: impl std::fmt::Display, e: object_store::Error) -> Error {
    Error::Storage(Failure::caused(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_or_say_why_not() {
        let s3 = S3Options::default().endpoint("http://127.0.0.1:9");
        let at = Location::parse("s3://bucket/some/prefix/", &s3).unwrap();
        assert_eq!(at.prefix, "some/prefix/");
        assert_eq!(at.path("differential").as_ref(), "some/prefix/differential");
        for bad in ["s3://bucket", "s3://bucket/", "s3:///x", "ftp://x/y", "file://relative", ""] {
            let err = Location::parse(bad, &s3).unwrap_err();
            assert!(matches!(err, Error::InvalidOption(_)), "{bad}: {err}");
        }
        let err = Location::parse("s3://b/p", &S3Options::default().endpoint("localhost:9"));
        assert!(matches!(err, Err(Error::InvalidOption(_))));
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("new").join("dir");
        let at = Location::parse(inside.to_str().unwrap(), &s3).unwrap();
        assert!(inside.is_dir());
        assert_eq!(at.prefix, "");
        let url = format!("file://{}", inside.display());
        assert_eq!(Location::parse(&url, &s3).unwrap().to_string(), inside.display().to_string());
    }
}
