//! The end-to-end harness: our real `nova-compute` binary with its own
//! nova.conf and a unique host, nova's own API code as the peer
//! (`deploy/dev/nova_peer.py`), Glance over HTTP, images read with
//! qemu-img and debugfs.

#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use stack_tests::{require, stack_dir, Component};

pub const GLANCE: &str = "http://127.0.0.1:9292";

/// The service's nova.conf, from the stack's one writer (deploy/dev/compute-conf),
/// with `extra` appended.
fn write_nova_conf(conf: &Path, host: &str, dir: &Path, extra: &str) {
    use std::io::Write;
    let writer = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/dev/compute-conf");
    let state = dir.join("state");
    let mut child = Command::new(&writer)
        .args(["--host", host, "--report-interval", "5", "--glance", GLANCE, "--glance-retries", "1", "--extra"])
        .arg("--state-path")
        .arg(&state)
        .arg("--log-dir")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(File::create(conf).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", writer.display()));
    child.stdin.take().unwrap().write_all(extra.as_bytes()).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{} failed: {status}", writer.display());
}

/// Every test here boots a TCG guest and runs a service: one at a time,
/// whatever `--test-threads` says, so two cores are not asked to emulate
/// several guests at once.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Held for the whole of a test: this binary's turn, and the shared broker
/// lock (the messaging crate's broker-restart test takes it exclusively).
pub struct StackTurn {
    _serial: MutexGuard<'static, ()>,
    _broker: File,
}

/// Fails (never skips) without the stack; holds the turn for the test.
pub fn stack() -> StackTurn {
    stack_with_broker(rustix::fs::FlockOperation::LockShared)
}

/// `stack()` for a test that stops the broker: the broker lock is taken
/// exclusively, so no test of another binary or checkout is using RabbitMQ.
pub fn stack_owning_broker() -> StackTurn {
    stack_with_broker(rustix::fs::FlockOperation::LockExclusive)
}

fn stack_with_broker(lock: rustix::fs::FlockOperation) -> StackTurn {
    // A test that failed while holding the turn poisons it; the next may still run.
    let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    require(&[Component::Libvirt, Component::GuestFixture, Component::RabbitMq, Component::Glance]);
    let nova_conf = stack_dir().join("nova/nova.conf");
    assert!(nova_conf.is_file(), "nova-conductor is not configured ({}): run deploy/dev/stack up", nova_conf.display());
    let broker = File::create("/tmp/openstack-rs-rabbitmq.lock").expect("broker lock file");
    rustix::fs::flock(&broker, lock).expect("broker lock");
    StackTurn { _serial: serial, _broker: broker }
}

/// `rabbitmqctl` on the stack's broker; its stdout.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl").args(args).output().expect("run rabbitmqctl");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts the broker's application again however the test ends.
pub struct BrokerBack;

impl Drop for BrokerBack {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").status();
        let _ = Command::new("rabbitmqctl").arg("await_startup").status();
    }
}

/// Our service, stopped (SIGTERM) on drop.
pub struct Compute {
    pub host: String,
    pub dir: PathBuf,
    pub conf: PathBuf,
    run_as: Option<RunAs>,
    child: Option<Child>,
}

/// An unprivileged user to run the service as (Kolla: nova, uid 42436),
/// with the home its libvirt client reads `.config/libvirt/auth.conf` from.
#[derive(Clone)]
pub struct RunAs {
    pub user: String,
    pub home: PathBuf,
}

impl Compute {
    /// A new host `e2e-<uuid8>` with `extra` appended to its nova.conf.
    pub fn start(extra: &str) -> Compute {
        let host = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let dir = stack_dir().join("e2e").join(&host);
        Self::start_in(host, dir, extra)
    }

    /// A new host, the process run as `run_as` (its state and log
    /// directories owned by that user).
    pub fn start_as(run_as: RunAs, extra: &str) -> Compute {
        let host = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let dir = stack_dir().join("e2e").join(&host);
        Self::launch(host, dir, extra, Some(run_as))
    }

    /// Starts again on an existing host and state directory (restart tests).
    pub fn start_in(host: String, dir: PathBuf, extra: &str) -> Compute {
        Self::launch(host, dir, extra, None)
    }

    fn launch(host: String, dir: PathBuf, extra: &str, run_as: Option<RunAs>) -> Compute {
        let snapshots = dir.join("state/instances/snapshots");
        std::fs::create_dir_all(&snapshots).unwrap();
        // qemu (another uid) must traverse into the snapshot directory.
        let mut p = snapshots.clone();
        while p.starts_with(stack_dir()) && p != stack_dir() {
            let _ = Command::new("chmod").arg("o+x").arg(&p).status();
            p.pop();
        }
        let conf = dir.join("nova.conf");
        write_nova_conf(&conf, &host, &dir, extra);
        if let Some(r) = &run_as {
            let owner = format!("{0}:{0}", r.user);
            let st = Command::new("chown").arg("-R").arg(&owner).arg(&dir).status().unwrap();
            assert!(st.success(), "chown {owner} {}", dir.display());
        }
        let mut compute = Compute { host, dir, conf, run_as, child: None };
        compute.spawn();
        compute
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("nova-compute.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let offset = self.log().len();
        let binary = env!("CARGO_BIN_EXE_nova-compute");
        // setpriv and env exec: the service keeps the child's pid (signals
        // and Kolla's pid-based healthcheck reach it directly).
        let mut command = match &self.run_as {
            None => Command::new(binary),
            Some(r) => {
                let mut c = Command::new("setpriv");
                c.args(["--reuid", &r.user, "--regid", &r.user, "--init-groups", "--", "env"])
                    .arg(format!("HOME={}", r.home.display()))
                    .arg(binary);
                c
            }
        };
        let child = command
            .arg("--config-file")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nova-compute");
        self.child = Some(child);
        wait_until(Duration::from_secs(90), "nova-compute started", || {
            self.log()[offset..].contains("nova-compute started")
        });
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().unwrap();
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(150);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// SIGKILL, as the OOM killer or `docker kill` would: nothing runs on
    /// the way out.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL nova-compute");
            child.wait().expect("reap nova-compute");
        }
    }
}

impl Drop for Compute {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `nova_peer.py` and returns its JSON; nova's refusals come back as
/// `{"error": ...}` for the tests that assert on them.
pub fn peer(args: &[&str]) -> Value {
    stack_tests::nova_peer(args).unwrap_or_else(|refusal| refusal)
}

/// `peer` for a change that must succeed.
#[track_caller]
pub fn peer_ok(args: &[&str]) -> Value {
    stack_tests::nova_peer(args).unwrap_or_else(|refusal| panic!("nova_peer {args:?}: {refusal}"))
}

pub fn create_instance(uuid: &str, host: &str, props: &[&str]) -> Value {
    let mut args = vec!["create-instance", "--uuid", uuid, "--host", host];
    for p in props {
        args.push("--image-prop");
        args.push(p);
    }
    let r = peer(&args);
    assert!(r.get("error").is_none(), "create-instance: {r}");
    r
}

pub fn show(uuid: &str) -> Value {
    peer(&["show-instance", "--uuid", uuid])
}

/// Polls nova's DB until the instance has no task state; returns the report.
pub fn wait_task_state_none(uuid: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let r = show(uuid);
        if r["task_state"].is_null() {
            return r;
        }
        assert!(Instant::now() < deadline, "task state stuck: {r}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl").arg("-sS").args(args).output().expect("curl");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The image as Glance shows it, or None when it is gone (404).
pub fn glance_image(id: &str) -> Option<Value> {
    let (_, body) = curl(&["-w", "\n%{http_code}", &format!("{GLANCE}/v2/images/{id}")]);
    let (json, code) = body.rsplit_once('\n').unwrap();
    (code == "200").then(|| serde_json::from_str(json).unwrap())
}

/// Deletes an image as a user would; Glance must take the request (204,
/// or 404 when it is already gone), or the test's premise would be false.
pub fn glance_delete(id: &str) {
    let (_, code) =
        curl(&["-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", &format!("{GLANCE}/v2/images/{id}")]);
    assert!(code == "204" || code == "404", "Glance answered {code} to DELETE of image {id}");
}

/// Images with these property filters (`instance_uuid=...`).
pub fn glance_list(filters: &str) -> Vec<Value> {
    let (_, body) = curl(&[&format!("{GLANCE}/v2/images?{filters}&limit=100")]);
    let v: Value = serde_json::from_str(&body).unwrap();
    v["images"].as_array().cloned().unwrap_or_default()
}

/// Downloads an image and reads `path` (inside the ext4 image) with debugfs.
pub fn file_in_image(id: &str, path: &str, work: &Path) -> (Value, String) {
    let qcow = work.join(format!("{id}.img"));
    let raw = work.join(format!("{id}.raw"));
    let (ok, _) = curl(&["-f", "-o", qcow.to_str().unwrap(), &format!("{GLANCE}/v2/images/{id}/file")]);
    assert!(ok, "download image {id}");
    let info = stack_tests::qemu_img_info(&qcow).unwrap();
    let st = Command::new("qemu-img").args(["convert", "-O", "raw"]).arg(&qcow).arg(&raw).status().unwrap();
    assert!(st.success());
    let out = Command::new("debugfs").arg("-R").arg(format!("cat {path}")).arg(&raw).output().unwrap();
    let _ = std::fs::remove_file(&qcow);
    let _ = std::fs::remove_file(&raw);
    (info, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The task states our service saved through the conductor for `uuid`,
/// in order, as `(task_state, expected)` from the debug log.
pub fn saved_task_states(log: &str, uuid: &str) -> Vec<(String, String)> {
    log.lines()
        .filter(|l| l.contains("saving instance") && l.contains(uuid))
        .filter_map(|l| {
            let ts = l.split("task_state=").nth(1)?.split(' ').next()?.to_owned();
            let ex = l.split("expected=").nth(1)?.split(' ').next()?.to_owned();
            Some((ts, ex))
        })
        .collect()
}

pub fn read_to_string(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

// ---------------------------------------------------------------------------
// A Glance front end the test controls (e2e_failures): an in-process TCP
// proxy on its own tokio runtime, in front of the shared Glance. It throttles
// upload bodies, cuts one upload after N bytes, plays "Glance is gone"
// (connections accepted, request head read and recorded, then closed with no
// answer) for a number of connections or for good, and can hold the GET of
// one image until the test releases it. Every request head it sees is
// recorded as "METHOD /path" (refused ones prefixed "refused ").
// ---------------------------------------------------------------------------

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Default)]
pub struct ProxyState {
    /// Cut the next `PUT .../file` after this many body bytes (one shot).
    pub cut_put_after: Mutex<Option<u64>>,
    /// Connections to refuse now; -1 = for good.
    pub refuse: AtomicI64,
    /// What `refuse` becomes when the upload is cut (0: Glance stays reachable).
    pub refuse_after_cut: AtomicI64,
    /// Upload bodies forwarded at most this fast (bytes/s); 0 = unthrottled.
    pub put_rate: AtomicU64,
    /// Hold `GET /v2/images/<this id>` ("*": any image) until `release()`.
    pub hold_image: Mutex<Option<String>>,
    /// Requests held so far.
    pub held: AtomicU64,
    /// Upload body bytes forwarded to Glance, all attempts.
    pub put_bytes: AtomicU64,
    pub cuts: AtomicU64,
    pub requests: Mutex<Vec<String>>,
    released: tokio::sync::Notify,
    released_flag: AtomicBool,
}

pub struct GlanceProxy {
    pub url: String,
    pub state: Arc<ProxyState>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl GlanceProxy {
    /// A proxy in front of `upstream` ("127.0.0.1:9292").
    pub fn start(upstream: &str) -> GlanceProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let upstream: SocketAddr = upstream.parse().unwrap();
        let state = Arc::new(ProxyState::default());
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let st = state.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(proxy_connection(client, upstream, st.clone()));
            }
        });
        GlanceProxy { url, state, runtime: Some(runtime) }
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Lets held requests (and later ones) through.
    pub fn release(&self) {
        self.state.released_flag.store(true, Ordering::SeqCst);
        *self.state.hold_image.lock().unwrap() = None;
        self.state.released.notify_waiters();
    }
}

impl Drop for GlanceProxy {
    fn drop(&mut self) {
        self.release();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn read_head(client: &mut tokio::net::TcpStream) -> Option<(Vec<u8>, usize)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some((buf, pos + 4));
        }
        if buf.len() > 1 << 20 {
            return None;
        }
    }
}

async fn proxy_connection(mut client: tokio::net::TcpStream, upstream: SocketAddr, st: Arc<ProxyState>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some((head, head_len)) = read_head(&mut client).await else { return };
    let line = String::from_utf8_lossy(&head[..head.iter().position(|&b| b == b'\r').unwrap_or(0)]).into_owned();
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    let refusing = st.refuse.load(Ordering::SeqCst);
    if refusing != 0 {
        if refusing > 0 {
            st.refuse.fetch_sub(1, Ordering::SeqCst);
        }
        st.requests.lock().unwrap().push(format!("refused {method} {path}"));
        return; // closed without an answer: a connection error for the client
    }
    st.requests.lock().unwrap().push(format!("{method} {path}"));
    let held = st.hold_image.lock().unwrap().clone();
    if let Some(id) = held {
        let image_get =
            path.strip_prefix("/v2/images/").is_some_and(|rest| !rest.contains('/') && (id == "*" || rest == id));
        if method == "GET" && image_get && !st.released_flag.load(Ordering::SeqCst) {
            let notified = st.released.notified();
            st.held.fetch_add(1, Ordering::SeqCst);
            if !st.released_flag.load(Ordering::SeqCst) {
                notified.await;
            }
        }
    }
    let Ok(up) = tokio::net::TcpStream::connect(upstream).await else { return };
    let is_upload = method == "PUT" && path.ends_with("/file");
    let cut_after = if is_upload { st.cut_put_after.lock().unwrap().take() } else { None };
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = up.into_split();
    let pump_state = st.clone();
    let pump = async move {
        // Returns true when the upload was cut.
        let mut body = head.len() - head_len;
        if uw.write_all(&head).await.is_err() {
            return false;
        }
        if is_upload {
            pump_state.put_bytes.fetch_add(body as u64, Ordering::SeqCst);
        }
        let started = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let rate = if is_upload { pump_state.put_rate.load(Ordering::SeqCst) } else { 0 };
            let want = if rate > 0 { buf.len().min((rate / 8).max(4096) as usize) } else { buf.len() };
            let n = match cr.read(&mut buf[..want]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            let mut n_fwd = n;
            if let Some(limit) = cut_after {
                if (body + n) as u64 >= limit {
                    n_fwd = (limit as usize).saturating_sub(body);
                    let _ = uw.write_all(&buf[..n_fwd]).await;
                    pump_state.put_bytes.fetch_add(n_fwd as u64, Ordering::SeqCst);
                    return true;
                }
            }
            if uw.write_all(&buf[..n_fwd]).await.is_err() {
                return false;
            }
            body += n_fwd;
            if is_upload {
                pump_state.put_bytes.fetch_add(n_fwd as u64, Ordering::SeqCst);
                let rate = pump_state.put_rate.load(Ordering::SeqCst);
                if rate > 0 {
                    let due = Duration::from_secs_f64(body as f64 / rate as f64);
                    let elapsed = started.elapsed();
                    if due > elapsed {
                        tokio::time::sleep((due - elapsed).min(Duration::from_millis(500))).await;
                    }
                }
            }
        }
    };
    let back = tokio::io::copy(&mut ur, &mut cw);
    tokio::pin!(pump);
    tokio::pin!(back);
    tokio::select! {
        cut = &mut pump => {
            if cut {
                st.cuts.fetch_add(1, Ordering::SeqCst);
                st.refuse.store(st.refuse_after_cut.load(Ordering::SeqCst), Ordering::SeqCst);
                return; // both sockets dropped mid-body
            }
            let _ = back.await;
        }
        _ = &mut back => {}
    }
}

/// Deletes what a test made, also when it fails: Glance images (directly on
/// the shared Glance), nova instance rows, notification queues.
#[derive(Default)]
pub struct Cleanup {
    pub images: Mutex<Vec<String>>,
    pub instances: Mutex<Vec<String>>,
    pub queues: Mutex<Vec<String>>,
}

impl Cleanup {
    pub fn image(&self, id: &str) {
        self.images.lock().unwrap().push(id.to_owned());
    }
    pub fn instance(&self, uuid: &str) {
        self.instances.lock().unwrap().push(uuid.to_owned());
    }
    pub fn queue(&self, name: &str) {
        self.queues.lock().unwrap().push(name.to_owned());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in self.images.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = std::panic::catch_unwind(|| glance_delete(id));
        }
        for uuid in self.instances.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = std::panic::catch_unwind(|| peer(&["purge-instance", "--uuid", uuid]));
        }
        for q in self.queues.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = std::panic::catch_unwind(|| peer(&["drain-notifications", "--queue", q, "--delete"]));
        }
    }
}

/// Downloads an image from the shared Glance: (bytes, sha512 hex).
pub fn glance_download_sha512(id: &str, work: &Path) -> (u64, String) {
    let file = work.join(format!("{id}.download"));
    let (ok, _) = curl(&["-f", "-o", file.to_str().unwrap(), &format!("{GLANCE}/v2/images/{id}/file")]);
    assert!(ok, "download image {id}");
    let size = std::fs::metadata(&file).unwrap().len();
    let out = Command::new("sha512sum").arg(&file).output().unwrap();
    let _ = std::fs::remove_file(&file);
    let sum = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_owned();
    (size, sum)
}

/// Files left in the compute's `snapshots_directory`.
pub fn snapshot_leftovers(compute: &Compute) -> Vec<PathBuf> {
    std::fs::read_dir(compute.dir.join("state/instances/snapshots"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The image nova-api reserved, from nova_peer's `snapshot`/`backup` reply.
pub fn image_id(reply: &Value) -> String {
    reply["image_id"].as_str().unwrap_or_else(|| panic!("nova-api refused: {reply}")).to_owned()
}

/// The results (`Success`, `Error`) of every instance-action event `event`
/// in a `show-instance` report, oldest first.
pub fn event_results(report: &Value, event: &str) -> Vec<String> {
    report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| a["events"].as_array().unwrap().iter())
        .filter(|e| e["event"] == event)
        .map(|e| e["result"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;

/// The `[glance]` section that sends the service through `proxy`.
pub fn glance_conf(proxy: &GlanceProxy, num_retries: u32) -> String {
    format!("[glance]\napi_servers = {}\nnum_retries = {num_retries}\n", proxy.url)
}

/// Starts a snapshot through nova's API with its upload throttled to 512 KiB/s and returns the
/// reserved image once more than 1 MiB of it has reached Glance.
pub fn snapshot_uploading(uuid: &str, name: &str, proxy: &GlanceProxy, cleanup: &Cleanup) -> String {
    proxy.state.put_rate.store(MIB / 2, Ordering::SeqCst);
    let before = proxy.state.put_bytes.load(Ordering::SeqCst);
    let image = image_id(&peer(&["snapshot", "--uuid", uuid, "--name", name]));
    cleanup.image(&image);
    wait_until(Duration::from_secs(60), "the upload is under way", || {
        proxy.state.put_bytes.load(Ordering::SeqCst) > before + MIB
    });
    image
}
