//! "401 → renew service credentials once", against in-process fakes on 127.0.0.1 (no stack):
//! a fake Keystone that issues service tokens `svc-1`, `svc-2`, ... and counts them, and a fake
//! Glance that refuses some service tokens with keystonemiddleware's 401.
//!
//! - A 401 on a GET and on the upload PUT makes the client drop the refused service token, get
//!   exactly one new one from Keystone and send the request again, which succeeds. The user's
//!   `X-Auth-Token` and the `X-OpenStack-Request-ID` are sent unchanged on every request.
//! - When Glance keeps answering 401, the call fails with `ImageNotAuthorized` after exactly one
//!   renewal: no second renewal, no retry loop (`num_retries` is left at its default of 3).
//!
//! The fakes speak just enough HTTP/1.1: one request per connection, `Content-Length` bodies,
//! every response `Connection: close`.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glance_client::{
    GlanceClient, GlanceError, GlanceOptions, ImageSource, ImageStatus, OpenedSource, PasswordCredentials,
    RequestContext, ServiceCredentials, ServiceUserOptions,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha512};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const IMAGE_ID: &str = "6f1b1e5c-6f0b-4c0e-9c53-2b0f4ad7c9a1";
const OWNER: &str = "3f2b8c1d9e0a4b5c8d7e6f5a4b3c2d1e";
const USER_TOKEN: &str = "gAAAAABuser-token-from-the-rpc-context";
const REQUEST_ID: &str = "req-0b6f3c2e-8a3d-4f0e-9d1c-5e7a9b2c4d6f";
/// Over one `UPLOAD_CHUNK` (4 MiB), so the body goes out in two chunks.
const DATA_LEN: usize = 5 * 1024 * 1024 + 321;
/// md5 of `data()` (Glance's `checksum`; the client does not check it).
const DATA_MD5: &str = "3e713242afa35544b033c1cb098f6779";
/// A hung client must fail the test, not the run.
const TEST_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 server

/// One request as the fake received it, with the status it was answered with.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
    status: u16,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            headers: vec![("Content-Type", "application/json".to_owned())],
            body: body.to_string().into_bytes(),
        }
    }

    fn empty(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Vec::new() }
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

struct FakeServer {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl FakeServer {
    async fn start(handler: Handler) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let task = tokio::spawn({
            let seen = Arc::clone(&seen);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (handler, seen) = (Arc::clone(&handler), Arc::clone(&seen));
                    tokio::spawn(async move {
                        if let Err(e) = serve_one(stream, handler, seen).await {
                            eprintln!("fake server: {e}");
                        }
                    });
                }
            }
        });
        Self { url, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Whatever",
    }
}

/// Reads one request (whole body included, so a refusal is never a reset connection), answers
/// it and closes the connection.
async fn serve_one(stream: TcpStream, handler: Handler, seen: Arc<Mutex<Vec<Seen>>>) -> io::Result<()> {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Ok(());
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    assert_ne!(
        headers.get("transfer-encoding").map(String::as_str),
        Some("chunked"),
        "the fake reads Content-Length bodies only"
    );
    let len = headers.get("content-length").map_or(0, |v| v.parse::<usize>().unwrap());
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await?;
    let mut request = Seen { method, path, headers, body, status: 0 };
    let reply = handler(&request);
    request.status = reply.status;
    // Recorded before the client can see the answer.
    seen.lock().unwrap().push(request);

    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reason_phrase(reply.status),
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let stream = stream.get_mut();
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&reply.body).await?;
    stream.shutdown().await
}

// ---------------------------------------------------------------------------------------------
// Fake Keystone and Glance

/// `POST /v3/auth/tokens` → 201, `X-Subject-Token: svc-N`, a token valid until 2099.
async fn fake_keystone() -> (FakeServer, Arc<AtomicUsize>) {
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&issued);
    let server = FakeServer::start(Arc::new(move |request: &Seen| {
        if request.method != "POST" || request.path != "/v3/auth/tokens" {
            return Reply::empty(404);
        }
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let body = json!({"token": {
            "methods": ["password"],
            "user": {"domain": {"id": "default", "name": "Default"}, "id": "a1b2c3", "name": "nova",
                     "password_expires_at": null},
            "audit_ids": [format!("audit-{n}")],
            "expires_at": "2099-01-01T00:00:00.000000Z",
            "issued_at": "2025-01-01T00:00:00.000000Z",
            "project": {"domain": {"id": "default", "name": "Default"}, "id": "svcproj", "name": "service"},
            "is_domain": false,
            "roles": [{"id": "r1", "name": "service"}, {"id": "r2", "name": "admin"}],
            "catalog": []
        }});
        let mut reply = Reply::json(201, &body);
        reply.headers.push(("X-Subject-Token", format!("svc-{n}")));
        reply
    }))
    .await;
    (server, issued)
}

/// Whether the fake Glance answers this request with 401 (what keystonemiddleware does when it
/// rejects the service token).
type Refuse = fn(&Seen) -> bool;

struct Image {
    status: &'static str,
    data: Option<Vec<u8>>,
}

fn image_json(glance_url: &str, image: &Image) -> Value {
    let (size, checksum, hash) = match &image.data {
        Some(data) => (json!(data.len()), json!(DATA_MD5), json!(hex::encode(Sha512::digest(data)))),
        None => (Value::Null, Value::Null, Value::Null),
    };
    json!({
        "id": IMAGE_ID,
        "name": "snapshot-of-vm1",
        "status": image.status,
        "visibility": "private",
        "protected": false,
        "os_hidden": false,
        "owner": OWNER,
        "disk_format": "qcow2",
        "container_format": "bare",
        "size": size,
        "virtual_size": null,
        "checksum": checksum,
        "os_hash_algo": if image.data.is_some() { json!("sha512") } else { Value::Null },
        "os_hash_value": hash,
        "min_ram": 0,
        "min_disk": 1,
        "tags": [],
        "image_type": "snapshot",
        "instance_uuid": "0d3c7a52-3b8e-4f37-bd1c-0e4c86a3e0f2",
        "created_at": "2025-01-01T00:00:00Z",
        "updated_at": "2025-01-01T00:00:05Z",
        "stores": if image.data.is_some() { json!("file") } else { Value::Null },
        "self": format!("/v2/images/{IMAGE_ID}"),
        "file": format!("/v2/images/{IMAGE_ID}/file"),
        "schema": "/v2/schemas/image",
        "locations": [],
        "direct_url": format!("{glance_url}/v2/images/{IMAGE_ID}/file"),
    })
}

/// One `queued` image: `GET /v2/images/{id}` and `PUT /v2/images/{id}/file` (queued → active),
/// after `refuse` had its say.
async fn fake_glance(refuse: Refuse) -> FakeServer {
    let image = Mutex::new(Image { status: "queued", data: None });
    FakeServer::start(Arc::new(move |request: &Seen| {
        if refuse(request) {
            let mut reply = Reply::json(
                401,
                &json!({"error": {"code": 401, "title": "Unauthorized",
                    "message": "The request you have made requires authentication."}}),
            );
            reply.headers.push(("WWW-Authenticate", "Keystone uri=\"http://127.0.0.1:5000\"".to_owned()));
            return reply;
        }
        let mut image = image.lock().unwrap();
        let image_path = format!("/v2/images/{IMAGE_ID}");
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", p) if p == image_path => Reply::json(200, &image_json("http://127.0.0.1:9292", &image)),
            ("PUT", p) if p == format!("{image_path}/file") => {
                if image.status != "queued" {
                    return Reply::json(409, &json!({"message": "image is not queued"}));
                }
                image.status = "active";
                image.data = Some(request.body.clone());
                Reply::empty(204)
            }
            _ => Reply::empty(404),
        }
    }))
    .await
}

fn service_token(request: &Seen) -> Option<&str> {
    request.header("x-service-token")
}

// ---------------------------------------------------------------------------------------------
// The client side

fn data() -> Vec<u8> {
    (0..DATA_LEN).map(|i| (i * 7 % 251) as u8).collect()
}

/// The snapshot data, in memory; counts how often the client opens it.
struct MemorySource {
    data: Vec<u8>,
    opened: AtomicUsize,
}

impl ImageSource for MemorySource {
    async fn open(&self) -> io::Result<OpenedSource> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        Ok(OpenedSource { reader: Box::pin(io::Cursor::new(self.data.clone())), len: self.data.len() as u64 })
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

fn glance_client(glance: &FakeServer, keystone: &FakeServer) -> GlanceClient {
    let options = GlanceOptions { api_servers: vec![glance.url.clone()], ..Default::default() };
    let service_user = ServiceUserOptions {
        send_service_user_token: true,
        auth_url: format!("{}/v3", keystone.url),
        credentials: ServiceCredentials::Password(PasswordCredentials {
            username: Some("nova".into()),
            user_domain_name: Some("Default".into()),
            password: "stack-service".into(),
            project_name: Some("service".into()),
            project_domain_name: Some("Default".into()),
            ..Default::default()
        }),
        cafile: None,
        certfile: None,
        keyfile: None,
        insecure: false,
        timeout: Some(Duration::from_secs(10)),
    };
    GlanceClient::new(&options, Some(&service_user)).unwrap()
}

fn context() -> RequestContext {
    RequestContext {
        auth_token: Some(USER_TOKEN.into()),
        global_request_id: Some(REQUEST_ID.into()),
        ..Default::default()
    }
}

/// Every Glance request carried the user's token and the request id unchanged; every Keystone
/// request was a password token request for the service user.
fn assert_headers_and_token_requests(glance: &FakeServer, keystone: &FakeServer) {
    for request in glance.seen() {
        assert_eq!(request.header("x-auth-token"), Some(USER_TOKEN), "{} {}", request.method, request.path);
        assert_eq!(request.header("x-openstack-request-id"), Some(REQUEST_ID), "{} {}", request.method, request.path);
    }
    for request in keystone.seen() {
        assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/v3/auth/tokens"));
        assert_eq!(request.header("x-auth-token"), None);
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body.pointer("/auth/identity/password/user/name"), Some(&json!("nova")));
        assert_eq!(body.pointer("/auth/scope/project/name"), Some(&json!("service")));
    }
}

/// (method, service token, status) of each Glance request, in order.
fn exchanges(glance: &FakeServer) -> Vec<(String, String, u16)> {
    glance
        .seen()
        .iter()
        .map(|r| (r.method.clone(), service_token(r).unwrap_or("<none>").to_owned(), r.status))
        .collect()
}

fn owned(expected: &[(&str, &str, u16)]) -> Vec<(String, String, u16)> {
    expected.iter().map(|(m, t, s)| ((*m).to_owned(), (*t).to_owned(), *s)).collect()
}

// ---------------------------------------------------------------------------------------------
// The tests

#[tokio::test]
async fn a_401_renews_the_service_token_once_and_the_request_succeeds() {
    tokio::time::timeout(TEST_LIMIT, async {
        // GET: svc-1 is refused (revoked in Keystone), svc-2 is accepted.
        let (keystone, issued) = fake_keystone().await;
        let glance = fake_glance(|r| service_token(r) == Some("svc-1")).await;
        let client = glance_client(&glance, &keystone);
        let ctx = context();

        let image = client.get(&ctx, IMAGE_ID).await.unwrap();
        assert_eq!(image.id, IMAGE_ID);
        assert_eq!(image.status, ImageStatus::Queued);
        assert_eq!(issued.load(Ordering::SeqCst), 2, "exactly one renewal");
        assert_eq!(exchanges(&glance), owned(&[("GET", "svc-1", 401), ("GET", "svc-2", 200)]));
        // The renewed token is cached: the next call asks Keystone nothing.
        client.get(&ctx, IMAGE_ID).await.unwrap();
        assert_eq!(issued.load(Ordering::SeqCst), 2);
        assert_eq!(exchanges(&glance).last().unwrap(), &("GET".to_owned(), "svc-2".to_owned(), 200));
        assert_headers_and_token_requests(&glance, &keystone);

        // Upload: the GET before the data is accepted with svc-1, then the PUT is refused
        // (svc-1 revoked meanwhile). The PUT is sent again, from the first byte, with svc-2.
        let (keystone, issued) = fake_keystone().await;
        let glance = fake_glance(|r| r.method == "PUT" && service_token(r) == Some("svc-1")).await;
        let client = glance_client(&glance, &keystone);
        let data = data();
        let source = MemorySource { data: data.clone(), opened: AtomicUsize::new(0) };

        let image = client.upload(&ctx, IMAGE_ID, &source, None).await.unwrap();
        assert_eq!(image.status, ImageStatus::Active);
        assert_eq!(image.size, Some(DATA_LEN as u64));
        assert_eq!(image.os_hash_value.as_deref(), Some(hex::encode(Sha512::digest(&data)).as_str()));
        assert_eq!(issued.load(Ordering::SeqCst), 2, "exactly one renewal");
        assert_eq!(source.opened.load(Ordering::SeqCst), 2, "one PUT again");
        let seen = exchanges(&glance);
        assert_eq!(seen[0], ("GET".to_owned(), "svc-1".to_owned(), 200));
        let puts: Vec<_> = seen.iter().filter(|(m, _, _)| m == "PUT").cloned().collect();
        assert_eq!(puts, owned(&[("PUT", "svc-1", 401), ("PUT", "svc-2", 204)]));
        let refused = seen.iter().position(|e| e.2 == 401).unwrap();
        assert!(
            seen[refused + 1..].iter().all(|(_, t, _)| t == "svc-2"),
            "after the 401 only the new token is sent: {seen:?}"
        );
        // Both PUTs carried the whole data with its exact length.
        for put in glance.seen().iter().filter(|r| r.method == "PUT") {
            assert_eq!(put.body, data);
            assert_eq!(put.header("content-length"), Some(DATA_LEN.to_string().as_str()));
            assert_eq!(put.header("x-openstack-image-size"), Some(DATA_LEN.to_string().as_str()));
        }
        assert_headers_and_token_requests(&glance, &keystone);
    })
    .await
    .expect("the client hung");
}

#[tokio::test]
async fn a_second_401_is_image_not_authorized_after_exactly_one_renewal() {
    tokio::time::timeout(TEST_LIMIT, async {
        let ctx = context();

        // GET: Glance refuses every service token.
        let (keystone, issued) = fake_keystone().await;
        let glance = fake_glance(|_| true).await;
        let client = glance_client(&glance, &keystone);

        let error = client.get(&ctx, IMAGE_ID).await.unwrap_err();
        match &error {
            GlanceError::ImageNotAuthorized { image_id, reason } => {
                assert_eq!(image_id, IMAGE_ID);
                assert!(reason.contains("requires authentication"), "{reason}");
                // A service token was sent: the "enable send_service_user_token" hint would
                // be misleading.
                assert!(!reason.contains("send_service_user_token"), "{reason}");
            }
            other => panic!("expected ImageNotAuthorized, got {other:?}"),
        }
        assert_eq!(issued.load(Ordering::SeqCst), 2, "exactly one renewal");
        assert_eq!(exchanges(&glance), owned(&[("GET", "svc-1", 401), ("GET", "svc-2", 401)]), "no retry loop");
        assert_headers_and_token_requests(&glance, &keystone);

        // Upload: GETs are accepted, every PUT is refused.
        let (keystone, issued) = fake_keystone().await;
        let glance = fake_glance(|r| r.method == "PUT").await;
        let client = glance_client(&glance, &keystone);
        let source = MemorySource { data: data(), opened: AtomicUsize::new(0) };

        let error = client.upload(&ctx, IMAGE_ID, &source, None).await.unwrap_err();
        assert!(
            matches!(&error, GlanceError::ImageNotAuthorized { image_id, .. } if image_id == IMAGE_ID),
            "expected ImageNotAuthorized, got {error:?}"
        );
        assert_eq!(issued.load(Ordering::SeqCst), 2, "exactly one renewal");
        let puts: Vec<_> = exchanges(&glance).into_iter().filter(|(m, _, _)| m == "PUT").collect();
        assert_eq!(puts, owned(&[("PUT", "svc-1", 401), ("PUT", "svc-2", 401)]), "no retry loop");
        assert_eq!(source.opened.load(Ordering::SeqCst), 2);
        // Nothing more is sent once the error is returned.
        let sent = glance.seen().len();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(glance.seen().len(), sent);
        assert_eq!(issued.load(Ordering::SeqCst), 2);
        assert_headers_and_token_requests(&glance, &keystone);
    })
    .await
    .expect("the client hung");
}
