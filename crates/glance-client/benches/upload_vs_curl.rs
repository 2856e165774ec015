//! Upload throughput of `GlanceClient::upload` next to `curl -T` of the same file into the same
//! Glance (the shared one of deploy/dev/stack on 9292), printed as MiB/s and a ratio.
//!
//!     cargo bench -p glance-client
//!
//! `GLANCE_BENCH_MIB` (default 1024) sets the image size, `GLANCE_BENCH_RUNS` (default 2) the
//! runs per side (alternating; the best run of each side is compared). The file is sparse with a
//! few written regions; both sides read the same file, and Glance writes every byte.
//! Not a test: it asserts nothing and measures this machine.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use glance_client::{FileSource, GlanceClient, GlanceOptions, RequestContext};
use serde_json::Value;

const GLANCE: &str = "http://127.0.0.1:9292";
const MIB: u64 = 1 << 20;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn reserve(http: &reqwest::Client, name: &str) -> String {
    let body = serde_json::json!({"name": name, "disk_format": "raw", "container_format": "bare"});
    let response = http.post(format!("{GLANCE}/v2/images")).json(&body).send().await;
    let json: Value = response
        .unwrap_or_else(|e| panic!("Glance not up at {GLANCE}: run deploy/dev/stack up ({e})"))
        .json()
        .await
        .expect("image json");
    json["id"].as_str().expect("image id").to_owned()
}

async fn delete(http: &reqwest::Client, id: &str) {
    let _ = http.delete(format!("{GLANCE}/v2/images/{id}")).send().await;
}

fn make_file(path: &Path, len: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::File::create(path).unwrap();
    file.set_len(len).unwrap();
    for offset in [0, len / 2, len - 4096] {
        file.seek(SeekFrom::Start(offset)).unwrap();
        file.write_all(&[0xa5; 4096]).unwrap();
    }
}

fn curl_upload(path: &Path, id: &str) -> f64 {
    let started = Instant::now();
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/octet-stream", "-T"])
        .arg(path)
        .arg(format!("{GLANCE}/v2/images/{id}/file"))
        .output()
        .expect("curl");
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "204", "curl upload failed");
    seconds
}

async fn client_upload(glance: &GlanceClient, path: &Path, id: &str) -> f64 {
    let started = Instant::now();
    glance.upload(&RequestContext::default(), id, &FileSource::new(path), None).await.expect("client upload");
    started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let size = env_or("GLANCE_BENCH_MIB", 1024) * MIB;
    let runs = env_or("GLANCE_BENCH_RUNS", 2).max(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.raw");
    make_file(&path, size);
    let http = reqwest::Client::new();
    let glance =
        GlanceClient::new(&GlanceOptions { api_servers: vec![GLANCE.into()], ..Default::default() }, None).unwrap();

    let (mut best_curl, mut best_client) = (f64::MAX, f64::MAX);
    for run in 1..=runs {
        let id = reserve(&http, "glance-client-bench-curl").await;
        let curl = curl_upload(&path, &id);
        delete(&http, &id).await;
        let id = reserve(&http, "glance-client-bench-client").await;
        let client = client_upload(&glance, &path, &id).await;
        delete(&http, &id).await;
        let rate = |s: f64| size as f64 / MIB as f64 / s;
        println!(
            "run {run}: curl -T {:.1} MiB/s ({curl:.2} s), glance-client {:.1} MiB/s ({client:.2} s)",
            rate(curl),
            rate(client)
        );
        best_curl = best_curl.min(curl);
        best_client = best_client.min(client);
    }
    let rate = |s: f64| size as f64 / MIB as f64 / s;
    println!(
        "upload of {} MiB into {GLANCE}: curl -T {:.1} MiB/s, glance-client {:.1} MiB/s (sha512 + verification included), ratio client/curl = {:.2}",
        size / MIB,
        rate(best_curl),
        rate(best_client),
        best_curl / best_client
    );
}
