//! `qemu-img`: image info (with the backing chain), overlay creation and
//! conversion to a standalone image with progress. Images in use by a
//! running QEMU are opened with `--force-share` / `-U`: QEMU holds the write
//! lock, and we only ever read them.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{QemuImgFailure, SnapshotError};
use crate::format::{DiskFormat, ImageFormat};

const QEMU_IMG: &str = "qemu-img";

/// One image of a chain, as `qemu-img info --output=json` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageInfo {
    pub filename: String,
    pub format: String,
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
    #[serde(rename = "actual-size", default)]
    pub actual_size: u64,
    #[serde(rename = "full-backing-filename", default)]
    pub full_backing_filename: Option<String>,
    #[serde(rename = "backing-filename-format", default)]
    pub backing_format: Option<String>,
}

fn run(command: &'static str, cmd: &mut Command) -> Result<Vec<u8>, SnapshotError> {
    // LC_ALL=C: messages we may show or parse stay in English (nova does the same).
    let out = cmd
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SnapshotError::qemu_img(command, QemuImgFailure::Spawn(e)))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(SnapshotError::qemu_img(command, QemuImgFailure::Exited { status: out.status, stderr }));
    }
    Ok(out.stdout)
}

/// The image at `path` and every backing file below it, top first.
pub fn info_chain(path: &Path, format: Option<&DiskFormat>) -> Result<Vec<ImageInfo>, SnapshotError> {
    let mut cmd = Command::new(QEMU_IMG);
    cmd.args(["info", "--force-share", "--backing-chain", "--output=json"]);
    if let Some(f) = format {
        cmd.args(["-f", f.as_str()]);
    }
    cmd.arg(path);
    let out = run("info", &mut cmd)?;
    serde_json::from_slice(&out).map_err(|e| SnapshotError::qemu_img("info", QemuImgFailure::Json(e)))
}

/// A qcow2 of `size` bytes over `backing` (absolute path, explicit format: QEMU
/// refuses to probe a backing file's format), or a plain one without.
pub fn create_qcow2(path: &Path, size: u64, backing: Option<(&Path, &DiskFormat)>) -> Result<(), SnapshotError> {
    let mut cmd = Command::new(QEMU_IMG);
    cmd.args(["create", "-q", "-f", "qcow2"]);
    if let Some((file, fmt)) = backing {
        cmd.arg("-b").arg(file).args(["-F", fmt.as_str()]);
    }
    cmd.arg(path).arg(size.to_string());
    run("create", &mut cmd).map(|_| ())
}

/// What to convert and where.
#[derive(Debug, Clone)]
pub struct Convert<'a> {
    pub source: &'a Path,
    pub source_format: &'a DiskFormat,
    pub dest: &'a Path,
    pub dest_format: ImageFormat,
    /// `-c` (only meaningful for qcow2).
    pub compress: bool,
}

/// `qemu-img convert -p -U` into a standalone image (a backing chain is read
/// through and flattened). `progress` receives a fraction in [0, 1];
/// `cancelled` is polled and kills the conversion when it returns true.
pub fn convert(
    job: &Convert<'_>,
    mut progress: impl FnMut(f64),
    cancelled: impl Fn() -> bool,
) -> Result<(), SnapshotError> {
    let mut child =
        convert_command(job).spawn().map_err(|e| SnapshotError::qemu_img("convert", QemuImgFailure::Spawn(e)))?;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    let stdout_reader = std::thread::spawn(move || read_progress(stdout, &tx));
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let ended = wait_reporting(&mut child, &rx, &mut progress, &cancelled);
    // The child has exited (or was killed): both pipes reach EOF.
    let _ = stdout_reader.join();
    let stderr = stderr_reader.join().unwrap_or_default();
    let status = ended?;
    while let Ok(f) = rx.try_recv() {
        progress(f);
    }
    if !status.success() {
        let stderr = stderr.trim().to_owned();
        return Err(SnapshotError::qemu_img("convert", QemuImgFailure::Exited { status, stderr }));
    }
    Ok(())
}

/// The `qemu-img convert` command line of `job`, with piped output.
fn convert_command(job: &Convert<'_>) -> Command {
    let mut cmd = Command::new(QEMU_IMG);
    cmd.args(["convert", "-p", "-U", "-t", "writeback"]);
    cmd.args(["-f", job.source_format.as_str(), "-O", job.dest_format.as_str()]);
    if job.compress && job.dest_format == ImageFormat::Qcow2 {
        cmd.arg("-c");
    }
    cmd.arg(job.source).arg(job.dest);
    cmd.env("LC_ALL", "C").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Sends every progress fraction `qemu-img -p` prints (lines ended by `\r`
/// or `\n`) until its stdout closes.
fn read_progress(mut stdout: impl Read, tx: &mpsc::Sender<f64>) {
    let mut buf = [0u8; 256];
    let mut line = String::new();
    while let Ok(n) = stdout.read(&mut buf) {
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if b == b'\r' || b == b'\n' {
                if let Some(f) = parse_progress(&line) {
                    let _ = tx.send(f);
                }
                line.clear();
            } else {
                line.push(b as char);
            }
        }
    }
}

/// Waits for the conversion to exit, passing progress on meanwhile; kills
/// it when `cancelled` (then [`SnapshotError::Cancelled`]) or when it can no
/// longer be waited for.
fn wait_reporting(
    child: &mut Child,
    rx: &mpsc::Receiver<f64>,
    progress: &mut impl FnMut(f64),
    cancelled: &impl Fn() -> bool,
) -> Result<ExitStatus, SnapshotError> {
    loop {
        while let Ok(f) = rx.try_recv() {
            progress(f);
        }
        let failure = if cancelled() {
            SnapshotError::Cancelled
        } else {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Err(e) => SnapshotError::qemu_img("convert", QemuImgFailure::Wait(e)),
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        return Err(failure);
    }
}

/// `    (45.50/100%)` → 0.455.
fn parse_progress(line: &str) -> Option<f64> {
    let inner = line.trim().strip_prefix('(')?.strip_suffix("/100%)")?;
    inner.trim().parse::<f64>().ok().map(|p| (p / 100.0).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_parse() {
        assert_eq!(parse_progress("    (45.50/100%)"), Some(0.455));
        assert_eq!(parse_progress("(100.00/100%)"), Some(1.0));
        assert_eq!(parse_progress("garbage"), None);
    }

    #[test]
    fn progress_is_read_from_carriage_return_separated_output() {
        let (tx, rx) = mpsc::channel();
        read_progress(&b"    (0.00/100%)\r    (50.00/100%)\r    (100.00/100%)\n"[..], &tx);
        drop(tx);
        assert_eq!(rx.iter().collect::<Vec<_>>(), vec![0.0, 0.5, 1.0]);
    }

    #[test]
    fn the_convert_command_reads_through_the_chain_without_locking() {
        let job = Convert {
            source: Path::new("/s/delta"),
            source_format: &DiskFormat::Qcow2,
            dest: Path::new("/s/out"),
            dest_format: ImageFormat::Qcow2,
            compress: true,
        };
        let cmd = convert_command(&job);
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            ["convert", "-p", "-U", "-t", "writeback", "-f", "qcow2", "-O", "qcow2", "-c", "/s/delta", "/s/out"]
        );
        let raw = Convert { dest_format: ImageFormat::Raw, ..job };
        assert!(!convert_command(&raw).get_args().any(|a| a == "-c"), "-c is for qcow2 only");
    }
}
