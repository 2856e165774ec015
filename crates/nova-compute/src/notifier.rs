//! The notifications the snapshot path sends, legacy and versioned as
//! `[notifications] notification_format` and `[oslo_messaging_notifications]
//! driver` choose: `instance.snapshot.start/end` around a snapshot and
//! nova's `@wrap_exception` error notifications. Payloads are built by
//! nova-objects; this module only decides what goes out, and sends it.

use nova_objects::{
    emit, exception_notifications, snapshot_notifications, ExceptionInfo, Instance, NotificationPolicy, PayloadOptions,
    Phase, RequestContext,
};
use serde_json::Value;

use crate::conductor::AnySink;
use crate::exceptions::NovaException;

/// Sends this host's notifications.
pub struct Notifier {
    sink: AnySink,
    policy: NotificationPolicy,
    payload: PayloadOptions,
    host: String,
}

impl Notifier {
    /// A notifier for `host` sending what `policy` enables through `sink`.
    pub fn new(sink: AnySink, policy: NotificationPolicy, payload: PayloadOptions, host: &str) -> Self {
        Notifier { sink, policy, payload, host: host.to_owned() }
    }

    /// Legacy `compute.instance.snapshot.<phase>` and versioned `instance.snapshot.<phase>`.
    pub async fn snapshot(&self, ctx: &RequestContext, instance: &Instance, phase: Phase, image_id: &str) {
        let notifications =
            snapshot_notifications(&self.policy, ctx, instance, &self.host, phase, image_id, &self.payload);
        emit(&self.sink, ctx, &notifications).await;
    }

    /// `@wrap_exception()`: the legacy error notification (event type = the
    /// function name, payload `{exception, args}`) and the versioned
    /// `compute.exception`.
    pub async fn exception(&self, ctx: &RequestContext, function_name: &str, call_args: Value, exc: &NovaException) {
        let traceback = exc.traceback();
        let info = ExceptionInfo {
            module_name: "nova.compute.manager",
            class: &exc.class,
            message: &exc.message,
            kwargs: &exc.kwargs,
            traceback: &traceback,
        };
        let notifications = exception_notifications(&self.policy, &self.host, function_name, call_args, &info);
        emit(&self.sink, ctx, &notifications).await;
    }
}
