//! In-memory stand-ins for the four peers of the snapshot path, so every
//! branch of nova's failure cascade can be driven in a unit test: a
//! conductor that keeps one instance row and answers compare-and-swap saves
//! as nova's database does, an image store, a virt driver and a
//! notification recorder. The real-stack tests cover the real peers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use glance_client::{GlanceError, ImageMeta, ImageQuery, ImageUpdate, RequestContext as GlanceContext};
use libvirt_snapshot::{ImageFormat, QuiescePolicy, SnapshotError, SnapshotRequest, SnapshotStrategy};
use nova_objects::{
    ConductorCall, ConductorTransport, Instance, Notification, NotificationPolicy, NotificationSink, PayloadOptions,
    PowerState, RemoteFailure, RequestContext, TransportError,
};
use serde_json::{json, Map, Value};

use crate::concurrency::{InFlight, Limits};
use crate::conductor::{AnyConductor, AnySink, BoxFuture, SinkError};
use crate::driver::{ExtractedImage, JournalRecovery, VirtDriver};
use crate::image_api::ImageApi;
use crate::manager::ComputeManager;
use crate::notifier::Notifier;
use crate::volume_api::VolumeApi;

/// The instance nova-api's own code sent in the captured `snapshot_instance` cast.
pub fn vector_instance() -> Instance {
    let record: Value =
        serde_json::from_str(include_str!("../../../tests/vectors/nova-34.0.0/cast-snapshot_instance.json")).unwrap();
    let body: Value = match &record["body"] {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        other => other.clone(),
    };
    let message: Value = serde_json::from_str(body["oslo.message"].as_str().unwrap()).unwrap();
    Instance::from_primitive(&message["args"]["instance"]).unwrap()
}

/// What the fake conductor's database holds and saw.
#[derive(Debug, Default)]
pub struct Db {
    /// The row's task state (None = NULL).
    pub task_state: Option<String>,
    /// The row is gone (`InstanceNotFound`).
    pub deleted: bool,
    /// Every save: (task state written, the `expected_task_state` kwarg).
    pub saves: Vec<(Option<String>, Option<Value>)>,
    /// Every fault: (code, message).
    pub faults: Vec<(i64, String)>,
    /// Every action event call: (method, failed).
    pub events: Vec<(String, bool)>,
    /// When set, save number `.0` (from 0) fails with nova exception class `.1`.
    pub fail_save: Option<(usize, &'static str)>,
}

/// A conductor with one instance row.
#[derive(Clone, Default)]
pub struct FakeConductor(pub Arc<Mutex<Db>>);

fn nova_failure(class: &str, kwargs: Value) -> TransportError {
    TransportError::Remote(Box::new(RemoteFailure {
        class: class.into(),
        module: "nova.exception".into(),
        message: format!("{class} (fake conductor)"),
        kwargs: kwargs.as_object().cloned().unwrap_or_default(),
    }))
}

impl FakeConductor {
    fn save(&self, objinst: &Value, kwargs: &Map<String, Value>) -> Result<Value, TransportError> {
        let mut db = self.0.lock().unwrap();
        let expected = kwargs.get("expected_task_state").cloned();
        let changes = objinst["nova_object.changes"].as_array().cloned().unwrap_or_default();
        let written = objinst["nova_object.data"]["task_state"].as_str().map(str::to_owned);
        db.saves.push((written.clone(), expected.clone()));
        if db.deleted {
            return Err(nova_failure("InstanceNotFound", json!({"instance_id": "x"})));
        }
        if let Some((n, class)) = db.fail_save {
            if db.saves.len() == n + 1 {
                return Err(nova_failure(class, json!({"instance_id": "x"})));
            }
        }
        if let Some(expected) = expected {
            let allowed: Vec<Value> = match expected {
                Value::Array(list) => list,
                one => vec![one],
            };
            let actual = db.task_state.clone().map(Value::String).unwrap_or(Value::Null);
            if !allowed.contains(&actual) {
                let class =
                    if actual == "deleting" { "UnexpectedDeletingTaskStateError" } else { "UnexpectedTaskStateError" };
                return Err(nova_failure(class, json!({"expected": allowed, "actual": actual})));
            }
        }
        if changes.iter().any(|c| c == "task_state") {
            db.task_state = written;
        }
        Ok(json!([{}, null]))
    }
}

impl ConductorTransport for FakeConductor {
    async fn call(&self, _ctx: &RequestContext, call: ConductorCall) -> Result<Value, TransportError> {
        let args = &call.args;
        let method = args.get("objmethod").and_then(Value::as_str).unwrap_or_default();
        match (call.method, method) {
            ("object_action", "save") => self.save(&args["objinst"], args["kwargs"].as_object().unwrap_or(&Map::new())),
            ("object_action", "create") => {
                let data = &args["objinst"]["nova_object.data"];
                let fault = (data["code"].as_i64().unwrap_or(0), data["message"].as_str().unwrap_or("").to_owned());
                self.0.lock().unwrap().faults.push(fault);
                Ok(json!([{}, null]))
            }
            ("object_class_action_versions", "event_start" | "event_finish_with_failure") => {
                let failed = !args["kwargs"]["exc_tb"].is_null() && method == "event_finish_with_failure";
                self.0.lock().unwrap().events.push((method.to_owned(), failed));
                Ok(Value::Null)
            }
            ("object_class_action_versions", "get_by_uuid") => {
                let mut instance = vector_instance();
                instance.set_task_state(None);
                let mut value = instance.to_primitive();
                value["nova_object.data"]["task_state"] = json!(self.0.lock().unwrap().task_state);
                value["nova_object.changes"] = json!([]);
                Ok(value)
            }
            other => panic!("the fake conductor does not know {other:?}"),
        }
    }
}

/// Records what was sent: (event type, priority).
#[derive(Clone, Default)]
pub struct RecordingSink(pub Arc<Mutex<Vec<(String, String)>>>);

impl NotificationSink for RecordingSink {
    async fn notify(&self, _ctx: &RequestContext, n: &Notification) -> Result<(), SinkError> {
        self.0.lock().unwrap().push((n.event_type.clone(), n.priority.as_str().to_owned()));
        Ok(())
    }
}

/// An image store: id → Glance's image record, plus failures to inject.
#[derive(Default)]
pub struct FakeImages {
    /// The images, by id.
    pub images: Mutex<BTreeMap<String, Value>>,
    /// Ids deleted, in order.
    pub deleted: Mutex<Vec<String>>,
    /// Fail every upload with this error.
    pub fail_upload: Mutex<Option<GlanceError>>,
    /// Fail every list with this error.
    pub fail_list: Mutex<Option<GlanceError>>,
}

impl FakeImages {
    /// A store holding `id` in status `status`, with `properties`.
    pub fn with(self, id: &str, status: &str, properties: Value) -> Self {
        let mut image = json!({"id": id, "name": format!("image {id}"), "status": status, "visibility": "private"});
        for (k, v) in properties.as_object().cloned().unwrap_or_default() {
            image[k] = v;
        }
        self.images.lock().unwrap().insert(id.to_owned(), image);
        self
    }

    /// The status of `id`, None when gone.
    pub fn status(&self, id: &str) -> Option<String> {
        self.images.lock().unwrap().get(id).map(|i| i["status"].as_str().unwrap().to_owned())
    }

    fn meta(&self, id: &str) -> Result<ImageMeta, GlanceError> {
        let image = self.images.lock().unwrap().get(id).cloned();
        let image = image.ok_or_else(|| GlanceError::ImageNotFound { image_id: id.to_owned() })?;
        Ok(ImageMeta::from_json(image).unwrap())
    }
}

fn take(slot: &Mutex<Option<GlanceError>>) -> Option<GlanceError> {
    slot.lock().unwrap().take()
}

impl ImageApi for FakeImages {
    fn get<'a>(&'a self, _: &'a GlanceContext, id: &'a str) -> BoxFuture<'a, Result<ImageMeta, GlanceError>> {
        Box::pin(async move { self.meta(id) })
    }

    fn update<'a>(
        &'a self,
        _: &'a GlanceContext,
        id: &'a str,
        _: &'a ImageUpdate,
    ) -> BoxFuture<'a, Result<ImageMeta, GlanceError>> {
        Box::pin(async move { self.meta(id) })
    }

    fn upload<'a>(
        &'a self,
        _: &'a GlanceContext,
        id: &'a str,
        file: &'a Path,
    ) -> BoxFuture<'a, Result<ImageMeta, GlanceError>> {
        Box::pin(async move {
            self.meta(id)?;
            if let Some(e) = take(&self.fail_upload) {
                return Err(e);
            }
            let size = std::fs::metadata(file).unwrap().len();
            let mut images = self.images.lock().unwrap();
            images.get_mut(id).unwrap()["status"] = json!("active");
            images.get_mut(id).unwrap()["size"] = json!(size);
            drop(images);
            self.meta(id)
        })
    }

    fn delete<'a>(&'a self, _: &'a GlanceContext, id: &'a str) -> BoxFuture<'a, Result<(), GlanceError>> {
        Box::pin(async move {
            self.meta(id)?;
            self.images.lock().unwrap().remove(id);
            self.deleted.lock().unwrap().push(id.to_owned());
            Ok(())
        })
    }

    fn list<'a>(
        &'a self,
        _: &'a GlanceContext,
        _: &'a ImageQuery,
    ) -> BoxFuture<'a, Result<Vec<ImageMeta>, GlanceError>> {
        Box::pin(async move {
            if let Some(e) = take(&self.fail_list) {
                return Err(e);
            }
            // Newest first, as Glance sorts by created_at desc: the ids sort by age here.
            let ids: Vec<String> = self.images.lock().unwrap().keys().rev().cloned().collect();
            ids.iter().map(|id| self.meta(id)).collect()
        })
    }
}

/// A Cinder whose volume snapshots are all `available`.
pub struct FakeVolumes;

impl VolumeApi for FakeVolumes {
    fn snapshot_status<'a>(
        &'a self,
        _: &'a GlanceContext,
        _: &'a str,
    ) -> BoxFuture<'a, Result<glance_client::SnapshotStatus, glance_client::CinderError>> {
        Box::pin(async { Ok(glance_client::SnapshotStatus::Available) })
    }
}

/// A virt driver with one domain.
pub struct FakeDriver {
    /// The domain exists.
    pub present: bool,
    /// What the next snapshot does: Ok writes a small image, Err fails.
    pub snapshot_error: Mutex<Option<SnapshotError>>,
    /// The next snapshot panics (a bug in the engine or the service).
    pub snapshot_panics: bool,
    /// Where images are written.
    pub dir: tempfile::TempDir,
}

impl Default for FakeDriver {
    fn default() -> Self {
        FakeDriver {
            present: true,
            snapshot_error: Mutex::new(None),
            snapshot_panics: false,
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

impl VirtDriver for FakeDriver {
    fn lookup(&self, uuid: &str) -> BoxFuture<'_, Result<(), SnapshotError>> {
        let uuid = uuid.to_owned();
        let present = self.present;
        Box::pin(async move {
            if present {
                Ok(())
            } else {
                Err(SnapshotError::DomainNotFound { uuid })
            }
        })
    }

    fn power_state(&self, _: &str) -> BoxFuture<'_, Result<PowerState, SnapshotError>> {
        Box::pin(async { Ok(PowerState::Running) })
    }

    fn snapshot(
        &self,
        request: SnapshotRequest,
        _: BoxFuture<'static, ()>,
    ) -> BoxFuture<'_, Result<ExtractedImage, SnapshotError>> {
        Box::pin(async move {
            assert!(!self.snapshot_panics, "the fake driver panics, as asked");
            if let Some(e) = self.snapshot_error.lock().unwrap().take() {
                return Err(e);
            }
            let path: PathBuf = self.dir.path().join(&request.name);
            std::fs::write(&path, b"QFI\xfb fake image").unwrap();
            Ok(ExtractedImage::new(path, ImageFormat::Qcow2, 14, SnapshotStrategy::Backup, Box::new(())))
        })
    }

    fn quiesce(&self, _: &str, _: QuiescePolicy) -> BoxFuture<'_, Result<(), SnapshotError>> {
        Box::pin(async { Ok(()) })
    }

    fn unquiesce(&self, _: &str) -> BoxFuture<'_, Result<u32, SnapshotError>> {
        Box::pin(async { Ok(1) })
    }

    fn recover(&self) -> BoxFuture<'_, Result<JournalRecovery, SnapshotError>> {
        Box::pin(async { Ok(JournalRecovery::default()) })
    }
}

/// A manager over the fakes, with both notification families on.
pub struct Fixture {
    /// The manager.
    pub m: Arc<ComputeManager>,
    /// Its conductor's database.
    pub db: Arc<Mutex<Db>>,
    /// Its image store.
    pub images: Arc<FakeImages>,
    /// Its notifications.
    pub sent: Arc<Mutex<Vec<(String, String)>>>,
}

impl Fixture {
    /// The instance's row starts in `task_state`; `images` and `driver` as given.
    pub fn new(task_state: Option<&str>, images: FakeImages, driver: FakeDriver) -> Self {
        let conductor = FakeConductor::default();
        conductor.0.lock().unwrap().task_state = task_state.map(str::to_owned);
        let sink = RecordingSink::default();
        let images = Arc::new(images);
        let policy = NotificationPolicy { legacy: true, versioned: true };
        let m = Arc::new(ComputeManager {
            host: "fake-host".into(),
            conductor: Arc::new(AnyConductor::api(conductor.clone())),
            driver: Arc::new(driver),
            image_api: images.clone(),
            volume_api: Arc::new(FakeVolumes),
            notifier: Notifier::new(AnySink::new(sink.clone()), policy, PayloadOptions::default(), "fake-host"),
            limits: Limits::new(0, 0),
            inflight: Arc::new(InFlight::default()),
        });
        Fixture { m, db: conductor.0.clone(), images, sent: sink.0.clone() }
    }

    /// The task states written, in order.
    pub fn task_states(&self) -> Vec<Option<String>> {
        self.db.lock().unwrap().saves.iter().map(|(s, _)| s.clone()).collect()
    }

    /// The notification event types sent, in order.
    pub fn event_types(&self) -> Vec<String> {
        self.sent.lock().unwrap().iter().map(|(e, _)| e.clone()).collect()
    }
}
