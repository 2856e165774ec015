//! Shared harness of the real-stack tests: starting the stack pieces through deploy/dev
//! (idempotently), creating reserved images the way nova-api does, Keystone tokens, throttled
//! sources and process memory readings.
//!
//! Must not know: what each test asserts.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use glance_client::{GlanceClient, GlanceOptions, ImageSource, OpenedSource, RequestContext};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

pub const SHARED_GLANCE: &str = "http://127.0.0.1:9292";
pub const AUTH_GLANCE: &str = "http://127.0.0.1:9293";
pub const CAPPED_GLANCE: &str = "http://127.0.0.1:9294";
pub const SPARE_GLANCE: &str = "http://127.0.0.1:9295";
pub const KEYSTONE: &str = "http://127.0.0.1:5000";
pub const KEYSTONE_SHORT: &str = "http://127.0.0.1:5001";
pub const SERVICE_PASSWORD: &str = "stack-service";
pub const DEMO_PASSWORD: &str = "stack-demo";
pub const MIB: u64 = 1 << 20;

pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo dir")
}

/// Runs deploy/dev shell functions (lib.sh, venv.sh, glance.sh, keystone.sh sourced), one caller at a time.
pub fn stack(functions: &str) -> Result<String, String> {
    static SERIAL: Mutex<()> = Mutex::new(());
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let script = format!(
        "source deploy/dev/lib.sh; source deploy/dev/venv.sh; source deploy/dev/mariadb.sh; source deploy/dev/glance.sh; source deploy/dev/keystone.sh; {functions}"
    );
    let out =
        Command::new("bash").arg("-c").arg(&script).current_dir(repo_dir()).output().map_err(|e| e.to_string())?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The shared Glance of `deploy/dev/stack up`; it is never started or changed here.
pub fn require_shared_glance() {
    let up = Command::new("curl").args(["-fs", "-o", "/dev/null", &format!("{SHARED_GLANCE}/versions")]).status();
    assert!(matches!(up, Ok(s) if s.success()), "Glance not up at {SHARED_GLANCE}: run deploy/dev/stack up");
}

/// Starts (if needed) one of this crate's extra Glance instances or Keystone.
pub fn require(function: &str, what: &str) {
    require_shared_glance();
    if let Err(out) = stack(function) {
        panic!("{what} not up and could not be started ({function}): run deploy/dev/stack up first\n{out}");
    }
}

pub fn init_tracing() {
    let _ =
        tracing_subscriber::fmt().with_ansi(false).with_env_filter("glance_client=debug").with_test_writer().try_init();
}

pub fn client_for(server: &str) -> GlanceClient {
    let options = GlanceOptions { api_servers: vec![server.to_owned()], num_retries: 3, ..GlanceOptions::default() };
    GlanceClient::new(&options, None).expect("client")
}

pub fn context(token: Option<&str>) -> RequestContext {
    RequestContext {
        auth_token: token.map(str::to_owned),
        global_request_id: Some(format!("req-{}", uuid::Uuid::new_v4())),
        ..RequestContext::default()
    }
}

/// Reserves an image like nova-api's `create_image` (name, formats and properties).
pub async fn reserve_image(
    server: &str,
    token: Option<&str>,
    name: &str,
    disk_format: &str,
    properties: Value,
) -> String {
    let mut body = json!({"name": name, "disk_format": disk_format, "container_format": "bare"});
    body.as_object_mut().unwrap().extend(properties.as_object().cloned().unwrap_or_default());
    let mut request = reqwest::Client::new().post(format!("{server}/v2/images")).json(&body);
    if let Some(token) = token {
        request = request.header("x-auth-token", token);
    }
    let response = request.send().await.expect("POST /v2/images");
    let status = response.status();
    let json: Value = response.json().await.expect("image json");
    assert!(status.is_success(), "image create failed: {status} {json}");
    json["id"].as_str().expect("id").to_owned()
}

/// A project-scoped password token from `keystone` (5000: 1 h, 5001: 20 s).
pub async fn password_token(keystone: &str, user: &str, password: &str, project: &str) -> String {
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
    let response = reqwest::Client::new()
        .post(format!("{keystone}/v3/auth/tokens"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("Keystone not up at {keystone}: run deploy/dev/stack up ({e})"));
    assert!(response.status().is_success(), "token for {user}: {}", response.status());
    response.headers()["x-subject-token"].to_str().unwrap().to_owned()
}

/// A sparse file of `len` bytes with a few marked regions, so the hash is not of zeros only.
pub fn sparse_file(dir: &Path, len: u64) -> PathBuf {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join(format!("image-{len}.raw"));
    let mut file = std::fs::File::create(&path).unwrap();
    file.set_len(len).unwrap();
    for (i, offset) in [0, len / 3, len / 2, len - 4096].into_iter().enumerate() {
        file.seek(SeekFrom::Start(offset)).unwrap();
        file.write_all(&[0x5a ^ i as u8; 4096]).unwrap();
    }
    path
}

pub fn sha512_file(path: &Path) -> String {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = sha2::Sha512::new();
    let mut buf = vec![0; 4 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

/// A file source read at most `bytes_per_sec`, counting how often it is opened (one open per
/// PUT attempt), so a test can land an event in the middle of an upload.
pub struct ThrottledFile {
    pub path: PathBuf,
    pub bytes_per_sec: u64,
    pub opens: AtomicU32,
}

impl ThrottledFile {
    pub fn new(path: PathBuf, bytes_per_sec: u64) -> Self {
        Self { path, bytes_per_sec, opens: AtomicU32::new(0) }
    }

    pub fn opens(&self) -> u32 {
        self.opens.load(Ordering::SeqCst)
    }
}

impl ImageSource for ThrottledFile {
    async fn open(&self) -> std::io::Result<OpenedSource> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        let file = tokio::fs::File::open(&self.path).await?;
        let len = file.metadata().await?.len();
        const PIECE: usize = 1 << 20;
        let pause = Duration::from_secs_f64(PIECE as f64 / self.bytes_per_sec as f64);
        let stream = futures_util::stream::unfold(file, move |mut file| async move {
            let mut buf = vec![0; PIECE];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    tokio::time::sleep(pause).await;
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        });
        Ok(OpenedSource { reader: Box::pin(tokio_util::io::StreamReader::new(stream)), len })
    }

    fn describe(&self) -> String {
        format!("{} (throttled)", self.path.display())
    }
}

/// `VmRSS` and `VmHWM` of this process, in bytes.
pub fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The image as Glance stores it, read without the client under test.
pub async fn raw_image(server: &str, token: Option<&str>, id: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(format!("{server}/v2/images/{id}"));
    if let Some(token) = token {
        request = request.header("x-auth-token", token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
