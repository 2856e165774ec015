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
use stack_tests::{repo_dir, require, stack_dir, Component};

pub const GLANCE: &str = "http://127.0.0.1:9292";

/// The stack's nova database is sqlite: two of these tests writing through
/// the conductor at once make it answer "database is locked". One at a time,
/// whatever `--test-threads` says.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Held for the whole of a test: this binary's turn, and the shared broker
/// lock (the messaging crate's broker-restart test takes it exclusively).
pub struct StackTurn {
    _serial: MutexGuard<'static, ()>,
    _broker: File,
}

/// Fails (never skips) without the stack; holds the turn for the test.
pub fn stack() -> StackTurn {
    // A test that failed while holding the turn poisons it; the next may still run.
    let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    require(&[Component::Libvirt, Component::GuestFixture, Component::RabbitMq, Component::Glance]);
    let nova_conf = stack_dir().join("nova/nova.conf");
    assert!(nova_conf.is_file(), "nova-conductor is not configured ({}): run deploy/dev/stack up", nova_conf.display());
    let broker = File::create("/tmp/openstack-rs-rabbitmq.lock").expect("broker lock file");
    rustix::fs::flock(&broker, rustix::fs::FlockOperation::LockShared).expect("shared broker lock");
    StackTurn { _serial: serial, _broker: broker }
}

/// Our service, stopped (SIGTERM) on drop.
pub struct Compute {
    pub host: String,
    pub dir: PathBuf,
    pub conf: PathBuf,
    child: Option<Child>,
}

impl Compute {
    /// A new host `e2e-<uuid8>` with `extra` appended to its nova.conf.
    pub fn start(extra: &str) -> Compute {
        let host = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let dir = stack_dir().join("e2e").join(&host);
        Self::start_in(host, dir, extra)
    }

    /// Starts again on an existing host and state directory (restart tests).
    pub fn start_in(host: String, dir: PathBuf, extra: &str) -> Compute {
        let snapshots = dir.join("state/instances/snapshots");
        std::fs::create_dir_all(&snapshots).unwrap();
        // qemu (another uid) must traverse into the snapshot directory.
        let mut p = snapshots.clone();
        while p.starts_with(stack_dir()) && p != stack_dir() {
            let _ = Command::new("chmod").arg("o+x").arg(&p).status();
            p.pop();
        }
        let conf = dir.join("nova.conf");
        std::fs::write(
            &conf,
            format!(
                "[DEFAULT]\nhost = {host}\nstate_path = {state}\nlog_dir = {dir}\ndebug = True\n\
                 transport_url = rabbit://guest:guest@127.0.0.1:5672/\nreport_interval = 5\n\n\
                 [libvirt]\nvirt_type = qemu\nconnection_uri = qemu:///system\n\n\
                 [glance]\napi_servers = {GLANCE}\nnum_retries = 1\n\n\
                 [oslo_messaging_notifications]\ndriver = messagingv2\n\n\
                 [notifications]\nnotification_format = both\n\n{extra}\n",
                state = dir.join("state").display(),
                dir = dir.display(),
            ),
        )
        .unwrap();
        let mut compute = Compute { host, dir, conf, child: None };
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
        let child = Command::new(env!("CARGO_BIN_EXE_nova-compute"))
            .arg("--config-file")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nova-compute");
        self.child = Some(child);
        wait_until(Duration::from_secs(90), "nova-compute started", || self.log()[offset..].contains("nova-compute started"));
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
}

impl Drop for Compute {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `nova_peer.py` and returns its JSON (errors are `{"error": ...}`).
pub fn peer(args: &[&str]) -> Value {
    let repo = repo_dir();
    let out = Command::new(stack_dir().join("venvs/nova/bin/python"))
        .arg(repo.join("deploy/dev/nova_peer.py"))
        .arg("--config-file")
        .arg(stack_dir().join("nova/nova.conf"))
        .args(args)
        .output()
        .expect("run nova_peer.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim().lines().last().unwrap_or("null")).unwrap_or_else(|e| {
        panic!("nova_peer {args:?}: {e}\nstdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    })
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

pub fn glance_delete(id: &str) {
    curl(&["-X", "DELETE", &format!("{GLANCE}/v2/images/{id}")]);
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
