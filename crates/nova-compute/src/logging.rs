//! Logging in oslo.log's text format, so operators can grep one `req-...` id
//! across nova-api, nova-conductor and this service, and Kolla's fluentd
//! parses our lines like Python nova's:
//!
//! ```text
//! 2026-11-22 13:45:03.123 4242 INFO nova_compute.manager [None req-52c4... u-1 p-1 - - -] [instance: 2e2e...] Snapshotting instance
//! ```
//!
//! The request part comes from the innermost enclosing span that carries
//! `request_id` (and optionally `global_request_id`, `user_identity`,
//! `instance`) fields; outside any request it is `[-]`, as in oslo.
//! Files are opened in append mode because Kolla rotates them with
//! logrotate's `copytruncate`.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// Where log lines go, decided from `[DEFAULT] log_dir`, `log_file` and
/// `use_stderr` the way oslo.log decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    pub file: Option<PathBuf>,
    pub stderr: bool,
    pub debug: bool,
}

impl LogTarget {
    /// oslo.log: `log_file` (relative to `log_dir` when both are set), else
    /// `<log_dir>/<binary>.log`, else stderr only.
    pub fn from_options(log_dir: Option<&str>, log_file: Option<&str>, use_stderr: bool, debug: bool) -> Self {
        let file = match (log_dir, log_file) {
            (Some(dir), Some(file)) => Some(Path::new(dir).join(file)),
            (None, Some(file)) => Some(PathBuf::from(file)),
            (Some(dir), None) => Some(Path::new(dir).join("nova-compute.log")),
            (None, None) => None,
        };
        let stderr = use_stderr || file.is_none();
        LogTarget { file, stderr, debug }
    }
}

/// Installs the global subscriber. Fails only if the log file cannot be opened.
pub fn init(target: &LogTarget) -> io::Result<()> {
    let file = match &target.file {
        Some(path) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot open log file {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let max_level = if target.debug { Level::DEBUG } else { Level::INFO };
    let layer = OsloLogLayer { file: file.map(Mutex::new), stderr: target.stderr, max_level, pid: std::process::id() };
    // A second init (tests) keeps the first subscriber; that is harmless.
    let _ = tracing_subscriber::registry().with(layer).try_init();
    Ok(())
}

struct OsloLogLayer {
    file: Option<Mutex<File>>,
    stderr: bool,
    max_level: Level,
    pid: u32,
}

/// The request fields oslo puts between brackets, captured from a span.
#[derive(Default, Clone)]
struct RequestFields {
    request_id: Option<String>,
    global_request_id: Option<String>,
    user_identity: Option<String>,
    instance: Option<String>,
}

impl Visit for RequestFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "request_id" => &mut self.request_id,
            "global_request_id" => &mut self.global_request_id,
            "user_identity" => &mut self.user_identity,
            "instance" | "instance_uuid" => &mut self.instance,
            _ => return,
        };
        *slot = Some(value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, format!("{value:?}").trim_matches('"'));
    }
}

/// An event's message plus its other fields as `key=value`. Request fields
/// logged on the event itself go between the brackets, as in oslo.
#[derive(Default)]
struct EventText {
    message: String,
    extra: String,
    request: RequestFields,
}

fn is_request_field(name: &str) -> bool {
    matches!(name, "request_id" | "global_request_id" | "user_identity" | "instance" | "instance_uuid")
}

impl Visit for EventText {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            name if is_request_field(name) => self.request.record_str(field, value),
            name => {
                let _ = write!(self.extra, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            name if is_request_field(name) => self.request.record_debug(field, value),
            name => {
                let _ = write!(self.extra, " {name}={value:?}");
            }
        }
    }
}

impl<S> Layer<S> for OsloLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = RequestFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<RequestFields>() {
                values.record(fields);
            }
        }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        *metadata.level() <= self.max_level && is_ours_or_important(metadata)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let request = ctx
            .event_scope(event)
            .into_iter()
            .flat_map(|scope| scope.from_root())
            .fold(RequestFields::default(), |acc, span| merge(acc, span.extensions().get::<RequestFields>()));
        let mut text = EventText::default();
        event.record(&mut text);
        let request = merge(request, Some(&text.request));
        let line = format_line(self.pid, event.metadata(), &request, &text);
        self.write(line.as_bytes());
    }
}

impl OsloLogLayer {
    fn write(&self, line: &[u8]) {
        // A log write that fails has nowhere better to be reported; dropping
        // the line must never take the service down.
        if let Some(file) = &self.file {
            if let Ok(mut f) = file.lock() {
                let _ = f.write_all(line);
            }
        }
        if self.stderr {
            let _ = io::stderr().lock().write_all(line);
        }
    }
}

/// Third-party crates (lapin, reqwest, hyper) are noisy at DEBUG; keep their
/// warnings and errors only.
fn is_ours_or_important(metadata: &tracing::Metadata<'_>) -> bool {
    let target = metadata.target();
    *metadata.level() <= Level::WARN
        || ["nova_compute", "nova_objects", "oslo_messaging", "oslo_config", "glance_client", "libvirt_snapshot"]
            .iter()
            .any(|ours| target.starts_with(ours))
}

/// Inner spans override outer ones field by field.
fn merge(mut acc: RequestFields, inner: Option<&RequestFields>) -> RequestFields {
    if let Some(inner) = inner {
        let inner = inner.clone();
        acc.request_id = inner.request_id.or(acc.request_id);
        acc.global_request_id = inner.global_request_id.or(acc.global_request_id);
        acc.user_identity = inner.user_identity.or(acc.user_identity);
        acc.instance = inner.instance.or(acc.instance);
    }
    acc
}

fn format_line(pid: u32, metadata: &tracing::Metadata<'_>, request: &RequestFields, text: &EventText) -> String {
    let now = time::OffsetDateTime::now_utc();
    let context = match &request.request_id {
        Some(req) => format!(
            "[{} {} {}]",
            request.global_request_id.as_deref().unwrap_or("None"),
            req,
            request.user_identity.as_deref().unwrap_or("- - - - -"),
        ),
        None => "[-]".to_owned(),
    };
    let instance = request.instance.as_deref().map(|u| format!("[instance: {u}] ")).unwrap_or_default();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03} {} {} {} {} {}{}{}\n",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond(),
        pid,
        level_name(*metadata.level()),
        metadata.target().replace("::", "."),
        context,
        instance,
        text.message,
        text.extra,
    )
}

/// oslo (Python logging) spells WARN as WARNING.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_follows_oslo_rules() {
        let t = LogTarget::from_options(Some("/var/log/kolla/nova"), None, false, false);
        assert_eq!(t.file.as_deref(), Some(Path::new("/var/log/kolla/nova/nova-compute.log")));
        assert!(!t.stderr);
        let t = LogTarget::from_options(Some("/var/log/nova"), Some("compute.log"), false, true);
        assert_eq!(t.file.as_deref(), Some(Path::new("/var/log/nova/compute.log")));
        let t = LogTarget::from_options(None, None, false, false);
        assert_eq!(t.file, None);
        assert!(t.stderr, "with no file, logs must still go somewhere");
    }

    #[test]
    fn line_has_oslo_shape_with_and_without_request() {
        let metadata = tracing::Metadata::new(
            "event",
            "nova_compute::manager",
            Level::WARN,
            None,
            None,
            None,
            tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&CALLSITE)),
            tracing::metadata::Kind::EVENT,
        );
        let text = EventText { message: "Snapshotting instance".into(), ..Default::default() };
        let request = RequestFields {
            request_id: Some("req-1".into()),
            user_identity: Some("u p - - -".into()),
            instance: Some("2e2e".into()),
            ..Default::default()
        };
        let line = format_line(42, &metadata, &request, &text);
        assert!(
            line.ends_with(
                " 42 WARNING nova_compute.manager [None req-1 u p - - -] [instance: 2e2e] Snapshotting instance\n"
            ),
            "{line}"
        );
        let bare = format_line(42, &metadata, &RequestFields::default(), &text);
        assert!(bare.contains(" nova_compute.manager [-] Snapshotting instance"), "{bare}");
    }

    struct NoCallsite;
    impl tracing::callsite::Callsite for NoCallsite {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            unreachable!("only used as an identifier")
        }
    }
    static CALLSITE: NoCallsite = NoCallsite;
}
