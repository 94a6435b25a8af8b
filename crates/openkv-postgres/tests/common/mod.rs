//! What the PostgreSQL backend's test binaries share.

/// A fresh schema's URL of `$OPENKV_TEST_POSTGRES_URL`, or `None` (skip) without a server —
/// unless `OPENKV_REQUIRE_POSTGRES=1` (set by scripts/test.sh), which makes that a failure.
pub fn fresh_url() -> Option<String> {
    let base = match std::env::var("OPENKV_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert_ne!(
                std::env::var("OPENKV_REQUIRE_POSTGRES").as_deref(),
                Ok("1"),
                "OPENKV_REQUIRE_POSTGRES=1 but OPENKV_TEST_POSTGRES_URL is not set"
            );
            eprintln!("OPENKV_TEST_POSTGRES_URL is not set: skipping this PostgreSQL test");
            return None;
        }
    };
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{separator}openkv_schema=t_{}", uuid::Uuid::new_v4().simple()))
}
