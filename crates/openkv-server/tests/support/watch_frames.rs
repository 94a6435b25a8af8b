//! Reading a `/v2/watch` response, for the HTTP and the TLS tests.

/// Reads one length-prefixed frame from a watch response; `None` at the end of the stream. An
/// error (a connection cut mid-stream) fails the test: streams end cleanly, shutdown included.
pub async fn next_frame(resp: &mut reqwest::Response, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if buf.len() >= 4 {
            let len = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
            if buf.len() >= 4 + len {
                let frame = buf[4..4 + len].to_vec();
                buf.drain(..4 + len);
                return Some(frame);
            }
        }
        match resp.chunk().await.unwrap() {
            Some(chunk) => buf.extend_from_slice(&chunk),
            None => return None,
        }
    }
}
