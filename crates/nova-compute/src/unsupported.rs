//! Everything else nova may send to `compute.HOST`.
//!
//! Calls are answered at once with oslo's `NoSuchMethod`, so nova-api fails
//! fast instead of waiting `rpc_response_timeout`. Casts get no reply; nova-api
//! usually set a task state before casting (`reboot_instance` →
//! `rebooting`, ...), which would stay forever: the instance gets a fault
//! saying the operation is not supported here and its task state is reset,
//! as `reverts_task_state` + `wrap_instance_fault` would do.
//!
//! The wire tells a call from a cast (a call carries `_reply_q`), so a
//! method nova adds later is handled right without a list to keep up.

use std::sync::Arc;

use error_chain::Chain;
use nova_objects::Instance;
use oslo_messaging::{RemoteError, Unhandled};
use serde_json::{json, Value};
use tracing::{info, warn, Instrument};

use crate::context::Request;
use crate::decorators::{Decorators, Revert};
use crate::exceptions::ComputeError;
use crate::manager::ComputeManager;

/// A method this service does not serve.
pub async fn unsupported(m: &Arc<ComputeManager>, req: Request, unhandled: Unhandled) -> Result<Value, RemoteError> {
    let Unhandled { method, args, reply_expected } = unhandled;
    let instance = args.get("instance").and_then(|v| Instance::from_primitive(v).ok());
    let uuid = instance.as_ref().map(|i| i.uuid().to_owned()).unwrap_or_default();
    let span = req.span(&method, &uuid);
    if reply_expected {
        let _enter = span.enter();
        warn!("RPC call {method} is not supported by this compute service: answering NoSuchMethod");
        return Err(RemoteError::no_such_method(&method));
    }
    async {
        warn!("RPC cast {method} is not supported by this compute service; ignoring it");
        if let Some(instance) = instance {
            clean_up_after_cast(m, &req, &method, instance).await;
        }
    }
    .instrument(span)
    .await;
    // A cast's result is never sent; oslo would have answered NoSuchMethod.
    Err(RemoteError::no_such_method(&method))
}

/// Reads the instance as it is now (nova-api may have set the task state
/// after serializing it) and, if it is in a task state, unwinds as nova's
/// decorators would: a fault, the task state reset — compare-and-swap on
/// the state read, so a concurrent change by someone else wins — and the
/// error notification.
async fn clean_up_after_cast(m: &ComputeManager, req: &Request, method: &str, instance: Instance) {
    let req = req.elevated();
    let mut current = match Instance::get_by_uuid(&m.conductor, &req.ctx, instance.uuid(), &[]).await {
        Ok(i) => i,
        Err(e) => {
            info!("Cannot read the instance after unsupported {method}: {}", Chain(&e));
            return;
        }
    };
    let Ok(Some(task_state)) = current.task_state() else {
        info!("Instance has no task state; nothing to reset after unsupported {method}");
        return;
    };
    // nova's order: the fault first, then the task state, then the notifications.
    let err = ComputeError::NotSupported { method: method.to_owned(), host: m.host.clone() };
    let stack = Decorators {
        wrap_exception: Some((method.to_owned(), json!({"instance": current.uuid()}))),
        reverts_task_state: Some(Revert::ToNoneFrom(task_state)),
        wrap_instance_fault: true,
        ..Decorators::default()
    };
    stack.unwind(m, &req, &mut current, &err).await;
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;
    use crate::fakes::{vector_instance, FakeDriver, FakeImages, Fixture};

    fn unhandled(method: &str, reply_expected: bool) -> Unhandled {
        let mut args = Map::new();
        args.insert("instance".into(), vector_instance().to_primitive());
        Unhandled { method: method.into(), args, reply_expected }
    }

    #[tokio::test]
    async fn an_unsupported_call_is_answered_at_once_and_touches_nothing() {
        let f = Fixture::new(Some("rebooting"), FakeImages::default(), FakeDriver::default());
        let err = unsupported(&f.m, Request::admin(), unhandled("get_console_output", true)).await.unwrap_err();
        assert_eq!(err.class, "NoSuchMethod");
        let db = f.db.lock().unwrap();
        assert!(db.saves.is_empty() && db.faults.is_empty());
        assert!(f.event_types().is_empty());
    }

    #[tokio::test]
    async fn an_unsupported_cast_resets_the_task_state_nova_api_set_and_says_why() {
        let f = Fixture::new(Some("rebooting"), FakeImages::default(), FakeDriver::default());
        let _ = unsupported(&f.m, Request::admin(), unhandled("reboot_instance", false)).await;
        let db = f.db.lock().unwrap();
        assert_eq!(db.task_state, None);
        assert_eq!(db.saves[0].1, Some(serde_json::json!("rebooting")), "compare-and-swap on the state read");
        assert_eq!(db.faults.len(), 1);
        assert!(db.faults[0].1.contains("reboot_instance is not supported"), "{:?}", db.faults);
        assert_eq!(f.event_types(), ["reboot_instance", "compute.exception"]);
    }
}
