//! The RPC endpoint on `compute.HOST` and `compute-alt.HOST`: decodes each
//! method's arguments and hands them to its handler. The four methods of
//! the snapshot path are served; everything else goes to `unsupported`.

use std::sync::Arc;

use nova_objects::Instance;
use oslo_messaging::{Context, Dispatcher, Endpoint, RemoteError};
use serde::Deserialize;
use serde_json::Value;

use crate::backup::{backup_instance, BackupRequest};
use crate::context::Request;
use crate::manager::{ComputeManager, COMPUTE_RPC_API_VERSION};
use crate::quiesce::{quiesce_instance, unquiesce_instance};
use crate::snapshot::snapshot_instance;
use crate::unsupported::unsupported;

#[derive(Debug, Deserialize)]
struct SnapshotArgs {
    instance: Value,
    image_id: String,
}

#[derive(Debug, Deserialize)]
struct BackupArgs {
    instance: Value,
    image_id: String,
    backup_type: String,
    rotation: i64,
}

#[derive(Debug, Deserialize)]
struct QuiesceArgs {
    instance: Value,
}

#[derive(Debug, Deserialize)]
struct UnquiesceArgs {
    instance: Value,
    #[serde(default)]
    mapping: Option<Value>,
}

/// The `instance` argument; a malformed one fails the request with Python's
/// `ValueError`, as oslo's deserializer would.
#[expect(clippy::result_large_err, reason = "the handlers answer with the same RemoteError the dispatcher sends")]
fn instance(value: &Value) -> Result<Instance, RemoteError> {
    Instance::from_primitive(value).map_err(|e| {
        RemoteError::new("builtins", "ValueError", format!("malformed instance argument: {}", error_chain::Chain(&e)))
    })
}

/// The dispatcher for this host's compute topics.
pub fn dispatcher(m: &Arc<ComputeManager>) -> Dispatcher {
    let (m1, m2, m3, m4, m5) = (m.clone(), m.clone(), m.clone(), m.clone(), m.clone());
    let endpoint = Endpoint::new(None, COMPUTE_RPC_API_VERSION)
        .method("snapshot_instance", move |ctx: Context, a: SnapshotArgs| {
            let m = m1.clone();
            async move {
                snapshot_instance(&m, Request::from_rpc(ctx), a.image_id, instance(&a.instance)?).await;
                Ok::<_, RemoteError>(Value::Null)
            }
        })
        .method("backup_instance", move |ctx: Context, a: BackupArgs| {
            let m = m2.clone();
            async move {
                let backup = BackupRequest { image_id: a.image_id, backup_type: a.backup_type, rotation: a.rotation };
                backup_instance(&m, Request::from_rpc(ctx), backup, instance(&a.instance)?).await;
                Ok::<_, RemoteError>(Value::Null)
            }
        })
        .method("quiesce_instance", move |ctx: Context, a: QuiesceArgs| {
            let m = m3.clone();
            async move { quiesce_instance(&m, Request::from_rpc(ctx), instance(&a.instance)?).await }
        })
        .method("unquiesce_instance", move |ctx: Context, a: UnquiesceArgs| {
            let m = m4.clone();
            async move {
                unquiesce_instance(&m, Request::from_rpc(ctx), instance(&a.instance)?, a.mapping).await;
                Ok::<_, RemoteError>(Value::Null)
            }
        });
    Dispatcher::new().endpoint(endpoint).fallback(move |ctx, unhandled| {
        let m = m5.clone();
        async move { unsupported(&m, Request::from_rpc(ctx), unhandled).await }
    })
}
