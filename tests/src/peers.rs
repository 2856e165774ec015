//! The stack's OpenStack peers as tests drive them: nova's own code through
//! `deploy/dev/nova_peer.py`, and the stack's MariaDB for the few states no
//! API can produce (a half-finished Glance delete).

use std::process::Command;

use serde_json::Value;

use crate::stack::{repo_dir, stack_dir};

/// Runs `nova_peer.py` with the nova venv and the stack's nova.conf.
///
/// `Ok` is the command's JSON answer; `Err` is nova's refusal,
/// `{"error": {"class", "module", "message"}}`, for tests that assert on
/// nova's exception. Panics when the peer cannot run or answers nothing
/// parsable: that is a broken stack, not an outcome.
pub fn nova_peer(args: &[&str]) -> Result<Value, Value> {
    let stack = stack_dir();
    let python = stack.join("venvs/nova/bin/python");
    let conf = stack.join("nova/nova.conf");
    assert!(python.exists() && conf.exists(), "nova venv or nova.conf missing: run deploy/dev/stack up");
    let out = Command::new(&python)
        .arg(repo_dir().join("deploy/dev/nova_peer.py"))
        .arg("--config-file")
        .arg(&conf)
        .args(args)
        .output()
        .expect("cannot run nova_peer.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answer: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        panic!(
            "nova_peer {args:?} failed ({}, {e}): {stdout}\n{}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    });
    match (out.status.success(), answer.get("error")) {
        (true, None) => Ok(answer),
        (false, Some(_)) => Err(answer),
        _ => panic!("nova_peer {args:?}: exit {} with {answer}", out.status),
    }
}

/// Runs one SQL statement as root on `database` of the stack's MariaDB
/// (`deploy/dev/mariadb.sh`) and returns how many rows it changed.
pub fn stack_sql(database: &str, statement: &str) -> u64 {
    let socket = stack_dir().join("mariadb/run/mysqld.sock");
    let out = Command::new("mariadb")
        .arg(format!("--socket={}", socket.display()))
        .args(["--batch", "--skip-column-names", database, "-e"])
        .arg(format!("{statement}; SELECT ROW_COUNT();"))
        .output()
        .expect("cannot run the mariadb client");
    assert!(out.status.success(), "{statement} on {database}: {}", String::from_utf8_lossy(&out.stderr).trim());
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .lines()
        .last()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{statement} on {database}: no row count in {text:?}"))
}
