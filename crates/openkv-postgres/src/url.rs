//! PostgreSQL URLs: openkv's own `openkv_schema` parameter, and passwords kept out of logs. A
//! bottom module: it imports none of the others.

use crate::error::{Error, Result};

/// The schema openkv uses when the URL names none.
pub const DEFAULT_SCHEMA: &str = "openkv";

/// Splits our `openkv_schema` parameter off a URL: (URL for the driver, schema name).
pub(crate) fn split_schema(url: &str) -> Result<(String, String)> {
    let (driver_url, schema) = split_schema_param(url)?;
    Ok((driver_url, schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_owned())))
}

/// [`split_schema`], `None` for a URL that names no schema.
pub(crate) fn split_schema_param(url: &str) -> Result<(String, Option<String>)> {
    let invalid = |why: String| Error::InvalidOption(format!("bad PostgreSQL URL: {why}"));
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut schema = None;
    let mut rest = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some(("openkv_schema", name)) => schema = Some(name.to_owned()),
            _ => rest.push(param),
        }
    }
    // The name is put into SQL (quoted) and into a NOTIFY channel name (63 bytes at most,
    // with our prefix): a plain identifier only.
    if let Some(schema) = &schema {
        let plain = !schema.is_empty()
            && schema.len() <= 48
            && schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !schema.as_bytes()[0].is_ascii_digit();
        if !plain {
            return Err(invalid(format!(
                "openkv_schema={schema:?}: use 1 to 48 characters of a-z, 0-9 and _, not \
                 starting with a digit"
            )));
        }
    }
    let driver_url =
        if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    Ok((driver_url, schema))
}

/// `url` with its password, if any (in the user info or a `password=` parameter), replaced by
/// `***` (for `Debug`).
pub(crate) fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<&str> = query
                .split('&')
                .map(|p| if p.starts_with("password=") { "password=***" } else { p })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}
