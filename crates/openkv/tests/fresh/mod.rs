//! Fresh databases and values for the engine tests (atomic.rs, watch.rs).

/// A byte value of the text `s`.
pub fn bytes(s: &str) -> openkv::Value {
    openkv::Value::Bytes(s.as_bytes().to_vec())
}

/// A fresh SQLite database in a temporary directory (kept alive by the returned guard).
pub async fn file_kv() -> (tempfile::TempDir, openkv::Kv) {
    let dir = tempfile::tempdir().unwrap();
    let kv = openkv::Kv::open(dir.path().join("db.sqlite3")).await.unwrap();
    (dir, kv)
}
