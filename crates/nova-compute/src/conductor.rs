//! The two message-bus peers every handler talks to — nova-conductor and the
//! notification topics — as the manager holds them.
//!
//! nova-objects' `ConductorTransport` and `NotificationSink` are static
//! traits (one concrete transport per program). The manager holds them
//! behind the type-erased [`AnyConductor`] and [`AnySink`] instead, so the
//! service hands in oslo-messaging's transports and unit tests hand in
//! in-memory fakes, without making every handler generic.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use nova_objects::{
    ConductorApi, ConductorCall, ConductorTransport, Notification, NotificationSink, RequestContext, TransportError,
};
use serde_json::Value;

/// A boxed future, the shape object-safe async traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a notification could not be sent (nova-objects' sink error).
pub use nova_objects::SendError as SinkError;

/// nova-conductor as the manager calls it.
pub type Conductor = ConductorApi<AnyConductor>;

/// Object-safe form of [`ConductorTransport`]; every transport has it.
trait DynConductorTransport: Send + Sync + 'static {
    fn call_boxed<'a>(
        &'a self,
        ctx: &'a RequestContext,
        call: ConductorCall,
    ) -> BoxFuture<'a, Result<Value, TransportError>>;
}

impl<T: ConductorTransport> DynConductorTransport for T {
    fn call_boxed<'a>(
        &'a self,
        ctx: &'a RequestContext,
        call: ConductorCall,
    ) -> BoxFuture<'a, Result<Value, TransportError>> {
        Box::pin(self.call(ctx, call))
    }
}

/// Any conductor transport: oslo-messaging's in the service, a fake in tests.
#[derive(Clone)]
pub struct AnyConductor(Arc<dyn DynConductorTransport>);

impl AnyConductor {
    /// Wraps a transport.
    pub fn new(transport: impl ConductorTransport) -> Self {
        AnyConductor(Arc::new(transport))
    }

    /// The conductor API over this transport.
    pub fn api(transport: impl ConductorTransport) -> Conductor {
        ConductorApi::new(Self::new(transport))
    }
}

impl ConductorTransport for AnyConductor {
    async fn call(&self, ctx: &RequestContext, call: ConductorCall) -> Result<Value, TransportError> {
        self.0.call_boxed(ctx, call).await
    }
}

/// Object-safe form of [`NotificationSink`].
trait DynNotificationSink: Send + Sync + 'static {
    fn notify_boxed<'a>(
        &'a self,
        ctx: &'a RequestContext,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), SinkError>>;
}

impl<S: NotificationSink + 'static> DynNotificationSink for S {
    fn notify_boxed<'a>(
        &'a self,
        ctx: &'a RequestContext,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.notify(ctx, notification))
    }
}

/// Any notification sink: oslo-messaging's notifier in the service, a
/// recorder in tests.
#[derive(Clone)]
pub struct AnySink(Arc<dyn DynNotificationSink>);

impl AnySink {
    /// Wraps a sink.
    pub fn new(sink: impl NotificationSink + 'static) -> Self {
        AnySink(Arc::new(sink))
    }
}

impl NotificationSink for AnySink {
    async fn notify(&self, ctx: &RequestContext, notification: &Notification) -> Result<(), SinkError> {
        self.0.notify_boxed(ctx, notification).await
    }
}
