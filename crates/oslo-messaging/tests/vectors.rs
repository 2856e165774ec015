//! Test 6 (second half): every message captured from real nova 34 /
//! oslo.messaging 18 in `tests/vectors/nova-34.0.0` decodes into the typed
//! request or reply and re-encodes byte-for-byte to the captured body.

use std::path::PathBuf;

use oslo_messaging::codec::{self, Reply, Request};
use oslo_messaging::{Context, RemoteError};
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/nova-34.0.0")
}

/// Every record of every vector file: single-record `.json` and `.jsonl`.
fn records() -> Vec<(String, Value)> {
    let dir = vectors_dir();
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("vectors missing at {}: {e}", dir.display()))
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(entry.path()).unwrap();
        if name.ends_with(".jsonl") {
            for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
                out.push((format!("{name}:{}", i + 1), serde_json::from_str(line).unwrap()));
            }
        } else if name.ends_with(".json") {
            out.push((name, serde_json::from_str(&text).unwrap()));
        }
    }
    out
}

#[test]
fn every_vector_round_trips_byte_for_byte() {
    let records = records();
    assert!(records.len() >= 5, "expected the captured vectors, found {}", records.len());
    let (mut requests, mut replies, mut failures) = (0, 0, 0);
    for (name, rec) in &records {
        let body = rec["body"].as_str().unwrap_or_else(|| panic!("{name}: no body"));
        assert_eq!(rec["properties"]["content_type"], "application/json", "{name}");
        let inner = codec::decode_json_body(body.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let reencoded = if inner.contains_key("method") {
            requests += 1;
            let req = Request::from_message(inner.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            check_request(name, rec, &req);
            req.to_message()
        } else {
            replies += 1;
            let reply = Reply::from_message(inner.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(reply.ending, "{name}: final replies carry ending: true");
            if let Some(f) = &reply.failure {
                failures += 1;
                let e = RemoteError::from_failure_string(f).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(!e.module.is_empty() && !e.class.is_empty(), "{name}");
                assert_eq!(e.to_failure_string().unwrap(), *f, "{name}: failure re-encodes identically");
            }
            reply.to_message()
        };
        assert_eq!(reencoded, inner, "{name}: semantic round trip");
        assert_eq!(codec::encode_envelope(&reencoded).unwrap(), body, "{name}: byte-identical re-encoding");
    }
    assert!(
        requests >= 4 && replies >= 1 && failures >= 1,
        "requests {requests} replies {replies} failures {failures}"
    );
}

fn check_request(name: &str, rec: &Value, req: &Request) {
    assert_eq!(req.context.as_map().len(), 25, "{name}: nova's 25 context keys");
    assert!(req.context.request_id().is_some_and(|r| r.starts_with("req-")), "{name}");
    assert!(req.unique_id.is_some(), "{name}");
    let is_call = rec["properties"].get("expiration").is_some();
    assert_eq!(req.msg_id.is_some(), is_call, "{name}: calls (and only calls) carry expiration and _msg_id");
    if rec["routing_key"].as_str().is_some_and(|k| k.starts_with("compute.")) {
        assert_eq!(req.version.as_deref(), Some("6.0"), "{name}");
        assert!(req.args.contains_key("instance"), "{name}");
    }
}

#[test]
fn context_survives_repacking_losslessly() {
    for (name, rec) in records() {
        let inner = codec::decode_json_body(rec["body"].as_str().unwrap().as_bytes()).unwrap();
        if !inner.contains_key("method") {
            continue;
        }
        let mut msg = inner.clone();
        let ctx = Context::unpack(&mut msg);
        let mut again = serde_json::Map::new();
        ctx.pack_into(&mut again);
        for (k, v) in inner.iter().filter(|(k, _)| k.starts_with("_context_")) {
            assert_eq!(again.get(k), Some(v), "{name}: {k}");
        }
    }
}
