//! Disposable guests of the fixture, driven through qemu-guest-agent.
//!
//! The domain and its overlay are created by `deploy/dev/guest.sh`
//! (`guest_define`), so tests boot exactly what `stack up` boots; everything
//! after that (start, agent traffic) goes through libvirt's API, the same
//! path the service uses.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};
use virt::connect::Connect;
use virt::domain::Domain;

use crate::error::Error;
use crate::stack::{connect, repo_dir, stack_dir};

/// How long one agent command may take before libvirt gives up on it. Long
/// enough for a guest-fsfreeze-freeze of a busy TCG guest.
const AGENT_COMMAND_TIMEOUT_SECS: i32 = 30;
/// Boot to agent-ready is ~10 s under TCG on an idle host; parallel tests on
/// two cores stretch that a lot. Override with STACK_GUEST_BOOT_TIMEOUT.
const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// guest-file-read chunk; the agent refuses counts above 48 MiB.
const FILE_READ_CHUNK: u64 = 1 << 20;

/// How to create a [`Guest`].
#[derive(Clone, Debug)]
pub struct GuestOptions {
    /// Start of the domain name; a random suffix makes it unique.
    pub prefix: String,
    /// Define the `org.qemu.guest_agent.0` channel (nova: `hw_qemu_guest_agent`).
    pub agent: bool,
    /// Keep the domain and its files when the value is dropped, for looking
    /// at a failure by hand (`guest_undefine NAME` removes it later).
    /// Defaults to true when STACK_KEEP_GUESTS=1 is set.
    pub keep: bool,
}

impl GuestOptions {
    /// Options for a guest named `<prefix>-<random>`, with an agent channel,
    /// kept after the test only when `STACK_KEEP_GUESTS=1`.
    pub fn new(prefix: &str) -> Self {
        let keep = std::env::var("STACK_KEEP_GUESTS").is_ok_and(|v| v == "1");
        GuestOptions { prefix: prefix.to_owned(), agent: true, keep }
    }

    /// Define the guest (not started).
    pub fn define(&self) -> Result<Guest, Error> {
        Guest::define_with(self)
    }
}

/// The outcome of a command run with [`Guest::exec`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status; `None` when the process was killed by a signal.
    pub exit_code: Option<i32>,
    /// The signal that killed the process, if one did.
    pub signal: Option<i32>,
    /// Everything the process wrote to stdout (decoded from the agent's base64).
    pub stdout: Vec<u8>,
    /// Everything the process wrote to stderr.
    pub stderr: Vec<u8>,
    /// The agent cut the captured output (it keeps at most 16 MiB).
    pub truncated: bool,
}

impl ExecOutput {
    /// The process exited with status 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// stdout as text, invalid UTF-8 replaced.
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text, invalid UTF-8 replaced.
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A persistent libvirt domain of the guest fixture with its own qcow2
/// overlay, destroyed and undefined (files included) on drop.
pub struct Guest {
    name: String,
    uuid: uuid::Uuid,
    dir: PathBuf,
    agent: bool,
    keep: bool,
    domain: Domain,
    conn: Connect,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("name", &self.name)
            .field("uuid", &self.uuid)
            .field("dir", &self.dir)
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

impl Guest {
    /// Define a guest with an agent channel (not started).
    pub fn define(prefix: &str) -> Result<Guest, Error> {
        GuestOptions::new(prefix).define()
    }

    /// Define, start and wait until its agent answers: the usual start of a
    /// test.
    pub fn boot(prefix: &str) -> Result<Guest, Error> {
        let guest = Guest::define(prefix)?;
        guest.start()?;
        guest.wait_for_agent(boot_timeout())?;
        Ok(guest)
    }

    fn define_with(opts: &GuestOptions) -> Result<Guest, Error> {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("{}-{}", opts.prefix, &suffix[..8]);
        let mut args = vec!["guest_define", name.as_str()];
        if !opts.agent {
            args.push("--no-agent");
        }
        run_guest_sh(&args)?;
        // From here on the domain exists: build the value first so that Drop
        // cleans up whatever fails next.
        let dir = stack_dir().join("guests").join(&name);
        let conn = connect()?;
        let domain = match conn.lookup_domain_by_name(&name) {
            Ok(d) => d,
            Err(e) => {
                let _ = run_guest_sh(&["guest_undefine", &name]);
                return Err(e.into());
            }
        };
        let mut guest = Guest { name, uuid: uuid::Uuid::nil(), dir, agent: opts.agent, keep: opts.keep, domain, conn };
        let uuid = guest.domain.uuid_string()?;
        guest.uuid = uuid.parse().map_err(|e| guest.err(format!("libvirt uuid {uuid:?}: {e}")))?;
        Ok(guest)
    }

    /// The libvirt domain name (`<prefix>-<8 hex digits>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The domain's UUID (what a nova instance row of this guest carries).
    pub fn uuid(&self) -> uuid::Uuid {
        self.uuid
    }

    /// The libvirt handle of the guest's domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The libvirt connection the domain handle belongs to.
    pub fn connection(&self) -> &Connect {
        &self.conn
    }

    /// Re-open the libvirt connection and the domain handle. After a
    /// libvirtd restart (or a connection closed by keepalive) the old ones
    /// are dead; the domain itself and its QEMU process are not.
    pub fn reconnect(&mut self) -> Result<(), Error> {
        let conn = connect()?;
        let domain = conn.lookup_domain_by_name(&self.name)?;
        self.domain = domain;
        self.conn = conn;
        Ok(())
    }

    /// `$STACK_DIR/guests/NAME`: overlay, domain XML, console log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The guest's `vda`: a qcow2 overlay on [`Guest::base_disk_path`].
    pub fn disk_path(&self) -> PathBuf {
        self.dir.join("disk.qcow2")
    }

    /// The raw ext4 image every guest's overlay backs onto (never written).
    pub fn base_disk_path() -> PathBuf {
        stack_dir().join("guest").join("base.raw")
    }

    /// Where the guest's serial console is logged (`console.log` in [`Guest::dir`]).
    pub fn console_log_path(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// The serial console so far (kernel log, `guest-init:` lines).
    pub fn console_log(&self) -> String {
        std::fs::read(self.console_log_path()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// Start the domain (`virDomainCreate`); returns before the guest is up.
    pub fn start(&self) -> Result<(), Error> {
        self.domain.create().map(drop).map_err(Error::from)
    }

    /// Power the domain off hard (`virDomainDestroy`), keeping its definition
    /// and disk, like a host crash or `virsh destroy`.
    pub fn destroy(&self) -> Result<(), Error> {
        if self.domain.is_active()? {
            self.domain.destroy()?;
        }
        Ok(())
    }

    /// Wait until the agent answers `guest-ping`; returns how long it took.
    /// On timeout the error carries the tail of the console log, which is
    /// where a broken boot explains itself.
    pub fn wait_for_agent(&self, timeout: Duration) -> Result<Duration, Error> {
        if !self.agent {
            return Err(self.err("defined without a guest agent channel".into()));
        }
        let start = Instant::now();
        loop {
            let last_error = match self.domain.qemu_agent_command(r#"{"execute":"guest-ping"}"#, 2, 0) {
                Ok(_) => return Ok(start.elapsed()),
                Err(e) => e.message().to_owned(),
            };
            // A guest that died (kernel panic, on_crash=destroy) never answers:
            // say so now instead of after the whole timeout.
            let dead = !self.domain.is_active()?;
            if dead || start.elapsed() >= timeout {
                return Err(Error::Timeout {
                    guest: self.name.clone(),
                    what: if dead { "the domain stopped running while booting" } else { "no answer to guest-ping" }
                        .to_owned(),
                    after: start.elapsed(),
                    context: format!(
                        "; last agent error: {last_error}\n--- console ({}) ---\n{}",
                        self.console_log_path().display(),
                        console_tail(&self.console_log(), 30)
                    ),
                });
            }
            sleep(Duration::from_millis(250));
        }
    }

    /// Send one agent command and return its `return` value. Agent-side
    /// errors (which libvirt turns into libvirt errors) become
    /// [`Error::Agent`].
    pub fn agent_command(&self, execute: &str, arguments: Option<Value>) -> Result<Value, Error> {
        let mut cmd = json!({ "execute": execute });
        if let Some(args) = arguments {
            cmd["arguments"] = args;
        }
        let reply = self.domain.qemu_agent_command(&cmd.to_string(), AGENT_COMMAND_TIMEOUT_SECS, 0).map_err(|e| {
            Error::Agent { guest: self.name.clone(), command: execute.to_owned(), message: e.message().to_owned() }
        })?;
        let mut value: Value = serde_json::from_str(&reply).map_err(|_| self.protocol(execute, &reply))?;
        match value.get_mut("return") {
            Some(ret) => Ok(ret.take()),
            None => Err(self.protocol(execute, &reply)),
        }
    }

    /// Run `/bin/sh -c script` in the guest (guest-exec), wait for it and
    /// return its status and output, whatever the status.
    pub fn exec(&self, script: &str) -> Result<ExecOutput, Error> {
        self.exec_timeout(script, DEFAULT_EXEC_TIMEOUT)
    }

    /// [`Guest::exec`] with its own bound on how long the command may run.
    pub fn exec_timeout(&self, script: &str, timeout: Duration) -> Result<ExecOutput, Error> {
        let started = self.agent_command(
            "guest-exec",
            Some(json!({ "path": "/bin/sh", "arg": ["-c", script], "capture-output": true })),
        )?;
        let pid = started["pid"].as_i64().ok_or_else(|| self.protocol("guest-exec", &started.to_string()))?;
        let start = Instant::now();
        loop {
            let status = self.agent_command("guest-exec-status", Some(json!({ "pid": pid })))?;
            if status["exited"].as_bool() == Some(true) {
                let decode = |field: &str| -> Result<Vec<u8>, Error> {
                    match status[field].as_str() {
                        None => Ok(Vec::new()),
                        Some(b64) => {
                            BASE64.decode(b64).map_err(|_| self.protocol("guest-exec-status", &status.to_string()))
                        }
                    }
                };
                return Ok(ExecOutput {
                    exit_code: status["exitcode"].as_i64().map(|c| c as i32),
                    signal: status["signal"].as_i64().map(|s| s as i32),
                    stdout: decode("out-data")?,
                    stderr: decode("err-data")?,
                    truncated: status["out-truncated"].as_bool() == Some(true)
                        || status["err-truncated"].as_bool() == Some(true),
                });
            }
            if start.elapsed() >= timeout {
                return Err(Error::Timeout {
                    guest: self.name.clone(),
                    what: format!("command {script:?} (guest pid {pid}) still running"),
                    after: start.elapsed(),
                    context: String::new(),
                });
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// Like [`Guest::exec`] but a non-zero exit is an error; returns stdout.
    pub fn sh(&self, script: &str) -> Result<String, Error> {
        let out = self.exec(script)?;
        if !out.success() {
            return Err(self.err(format!(
                "{script:?} exited with {}; stderr: {}",
                match (out.exit_code, out.signal) {
                    (Some(code), _) => format!("status {code}"),
                    (None, Some(sig)) => format!("signal {sig}"),
                    (None, None) => "no status".to_owned(),
                },
                out.stderr_lossy().trim()
            )));
        }
        Ok(out.stdout_lossy())
    }

    /// Read a whole file through guest-file-open/read/close. This reads what
    /// the guest sees (its page cache), not what is on the disk image.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, Error> {
        let handle = self.file_open(path, "r")?;
        let data = self.read_handle(handle);
        // Handles are a limited resource in the agent: close even after an error.
        let closed = self.agent_command("guest-file-close", Some(json!({ "handle": handle })));
        let data = data?;
        closed?;
        Ok(data)
    }

    fn read_handle(&self, handle: i64) -> Result<Vec<u8>, Error> {
        let mut data = Vec::new();
        loop {
            let chunk =
                self.agent_command("guest-file-read", Some(json!({ "handle": handle, "count": FILE_READ_CHUNK })))?;
            let b64 = chunk["buf-b64"].as_str().ok_or_else(|| self.protocol("guest-file-read", &chunk.to_string()))?;
            data.extend(BASE64.decode(b64).map_err(|_| self.protocol("guest-file-read", &chunk.to_string()))?);
            if chunk["eof"].as_bool() != Some(false) {
                return Ok(data);
            }
        }
    }

    /// Write (create or truncate) a file through guest-file-open/write/close.
    /// Like any guest write without fsync, the data may sit in the guest's
    /// page cache for a while.
    pub fn write_file(&self, path: &str, data: &[u8]) -> Result<(), Error> {
        let handle = self.file_open(path, "w")?;
        let written =
            self.agent_command("guest-file-write", Some(json!({ "handle": handle, "buf-b64": BASE64.encode(data) })));
        let closed = self.agent_command("guest-file-close", Some(json!({ "handle": handle })));
        let written = written?;
        closed?;
        match written["count"].as_u64() {
            Some(n) if n == data.len() as u64 => Ok(()),
            _ => Err(self.protocol("guest-file-write", &written.to_string())),
        }
    }

    fn file_open(&self, path: &str, mode: &str) -> Result<i64, Error> {
        let handle = self.agent_command("guest-file-open", Some(json!({ "path": path, "mode": mode })))?;
        handle.as_i64().ok_or_else(|| self.protocol("guest-file-open", &handle.to_string()))
    }

    /// guest-fsfreeze-freeze: returns how many filesystems were frozen.
    pub fn fsfreeze(&self) -> Result<u64, Error> {
        let n = self.agent_command("guest-fsfreeze-freeze", None)?;
        n.as_u64().ok_or_else(|| self.protocol("guest-fsfreeze-freeze", &n.to_string()))
    }

    /// guest-fsfreeze-thaw: returns how many filesystems were thawed.
    pub fn fsthaw(&self) -> Result<u64, Error> {
        let n = self.agent_command("guest-fsfreeze-thaw", None)?;
        n.as_u64().ok_or_else(|| self.protocol("guest-fsfreeze-thaw", &n.to_string()))
    }

    /// guest-fsfreeze-status: `"frozen"` or `"thawed"`.
    pub fn fsfreeze_status(&self) -> Result<String, Error> {
        let s = self.agent_command("guest-fsfreeze-status", None)?;
        s.as_str().map(str::to_owned).ok_or_else(|| self.protocol("guest-fsfreeze-status", &s.to_string()))
    }

    fn err(&self, message: String) -> Error {
        Error::Guest { guest: self.name.clone(), message }
    }

    fn protocol(&self, command: &str, reply: &str) -> Error {
        Error::Protocol { guest: self.name.clone(), command: command.to_owned(), reply: reply.to_owned() }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("keeping guest {} ({}) as asked", self.name, self.dir.display());
            return;
        }
        // Never panic here: Drop also runs while a failed assertion unwinds,
        // and a second panic would abort and hide the first.
        if let Err(e) = run_guest_sh(&["guest_undefine", &self.name]) {
            eprintln!("cleanup of guest {} failed: {e}", self.name);
        }
    }
}

fn boot_timeout() -> Duration {
    std::env::var("STACK_GUEST_BOOT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_BOOT_TIMEOUT)
}

/// Call a function of `deploy/dev/guest.sh` the way `stack` does: lib.sh
/// first, arguments passed positionally so nothing needs shell quoting.
fn run_guest_sh(args: &[&str]) -> Result<String, Error> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"source "$0/deploy/dev/lib.sh" && source "$0/deploy/dev/guest.sh" && "$@""#)
        .arg(repo_dir())
        .args(args)
        .env("STACK_DIR", stack_dir())
        .output()
        .map_err(|source| Error::Spawn { command: args.join(" "), source })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: args.join(" "),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last `lines` distinct lines: a respawning agent repeats itself.
fn console_tail(log: &str, lines: usize) -> String {
    let mut deduped: Vec<&str> = Vec::new();
    for line in log.lines() {
        if deduped.last() != Some(&line) {
            deduped.push(line);
        }
    }
    let from = deduped.len().saturating_sub(lines);
    deduped[from..].join("\n")
}
