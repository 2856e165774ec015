//! The message codec: the 2.0 envelope (`{"oslo.version": "2.0",
//! "oslo.message": "<JSON string>"}`) and the legacy bare form, the AMQP
//! properties oslo sets, kombu's optional compression, and the typed shapes of
//! requests, replies and notifications. Decoding is defensive: anything a
//! broker can hand us is either a typed message or a [`DecodeError`] naming
//! the reason, never a panic.

use std::io::{Read, Write};
use std::sync::Arc;

use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;
use serde_json::{Map, Value};

use crate::context::Context;
use crate::json;

/// `oslo.version` of the envelope this crate writes.
pub const ENVELOPE_VERSION: &str = "2.0";
const VERSION_KEY: &str = "oslo.version";
const MESSAGE_KEY: &str = "oslo.message";
/// kombu's content type for JSON bodies.
pub const CONTENT_TYPE: &str = "application/json";
/// kombu's header value for `kombu_compression = gzip` (zlib data).
pub const GZIP_COMPRESSION: &str = "application/x-gzip";
/// kombu's header value for `kombu_compression = bzip2` (a whole bzip2 stream,
/// as Python's `bz2.compress` writes it).
pub const BZIP2_COMPRESSION: &str = "application/x-bz2";

/// A compression codec of kombu's registry that this crate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zlib data under kombu's `application/x-gzip` (aliases `gzip`, `zlib`).
    Gzip,
    /// bzip2 under `application/x-bz2` (aliases `bzip2`, `bzip`).
    Bzip2,
}

impl Compression {
    /// Resolves a `kombu_compression` value or a received `compression`
    /// header the way kombu's registry does: by alias or by content type.
    /// `bz2` is accepted too because oslo documents it, although kombu 5.7
    /// itself only knows `bzip2`/`bzip` (see docs/oslo-messaging.md).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gzip" | "zlib" | GZIP_COMPRESSION => Some(Self::Gzip),
            "bz2" | "bzip2" | "bzip" | BZIP2_COMPRESSION => Some(Self::Bzip2),
            _ => None,
        }
    }

    /// The `compression` header value kombu writes for this codec.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Gzip => GZIP_COMPRESSION,
            Self::Bzip2 => BZIP2_COMPRESSION,
        }
    }

    fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Gzip => zlib_compress(data),
            Self::Bzip2 => bzip2_compress(data),
        }
    }

    fn decompress(self, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
        // Bounded read: a small compression bomb must not exhaust memory.
        let limit = (MAX_BODY_BYTES + 1) as u64;
        let mut out = Vec::new();
        let read = match self {
            Self::Gzip => flate2::read::ZlibDecoder::new(data).take(limit).read_to_end(&mut out),
            Self::Bzip2 => bzip2::read::BzDecoder::new(data).take(limit).read_to_end(&mut out),
        };
        read.map_err(|e| DecodeError::Decompress(Arc::new(e)))?;
        if out.len() > MAX_BODY_BYTES {
            return Err(DecodeError::TooLarge { size: out.len(), max: MAX_BODY_BYTES });
        }
        Ok(out)
    }
}

/// Largest body (after decompression) accepted; bigger ones are dropped.
/// nova's largest messages (instances with network info) are well below 1 MiB.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Why a received message was dropped.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No `content_type` property (oslo's server drops these too).
    #[error("message has no content_type property")]
    MissingContentType,
    /// A content type other than JSON.
    #[error("unsupported content_type {0:?}")]
    UnsupportedContentType(String),
    /// A `compression` header naming a codec other than gzip/zlib or bzip2.
    #[error("unsupported compression {0:?}")]
    UnsupportedCompression(String),
    /// The compressed body is corrupt.
    #[error("cannot decompress body")]
    Decompress(#[source] Arc<std::io::Error>),
    /// The body exceeds [`MAX_BODY_BYTES`].
    #[error("body of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Body size (at least).
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not UTF-8.
    #[error("body is not valid UTF-8 (at byte {0})")]
    InvalidUtf8(usize),
    /// The body (or the envelope's inner message) is not JSON.
    #[error("body is not JSON")]
    NotJson(#[source] Arc<serde_json::Error>),
    /// The JSON nests deeper than the parser's limit (128).
    #[error("body nests too deeply")]
    TooDeep,
    /// The body is JSON but not an object.
    #[error("body is not a JSON object")]
    NotAnObject,
    /// An envelope with an incompatible `oslo.version`.
    #[error("unsupported envelope version {0:?} (this side speaks 2.0)")]
    EnvelopeVersion(String),
    /// A known member with the wrong type.
    #[error("member {field:?} {reason}")]
    BadField {
        /// The member.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A reply's `failure` that is not a serialized exception.
    #[error("reply failure is not a serialized exception")]
    Failure(#[source] Arc<serde_json::Error>),
}

/// A body and the AMQP properties to publish it with.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The (possibly compressed) body.
    pub body: Vec<u8>,
    /// oslo's properties.
    pub properties: BasicProperties,
}

/// Wraps an inner message in the 2.0 envelope, byte-identical to oslo's.
pub fn encode_envelope(inner: &Map<String, Value>) -> Result<String, serde_json::Error> {
    let mut env = Map::new();
    env.insert(VERSION_KEY.to_owned(), Value::String(ENVELOPE_VERSION.to_owned()));
    env.insert(MESSAGE_KEY.to_owned(), Value::String(json::dumps(inner)?));
    json::dumps(&env)
}

/// The body and properties oslo would publish for `inner`. `expiration` is
/// set only on calls (the call timeout); `compression` is `kombu_compression`
/// (validated by `RabbitOptions::validate`; an unknown name sends uncompressed).
pub fn encode(
    inner: &Map<String, Value>,
    expiration_ms: Option<u64>,
    compression: Option<&str>,
) -> Result<Outgoing, serde_json::Error> {
    let text = encode_envelope(inner)?;
    let mut headers = FieldTable::default();
    let body = match compression.and_then(Compression::from_name) {
        Some(codec) => {
            headers.insert(ShortString::from("compression"), AMQPValue::LongString(codec.content_type().into()));
            codec.compress(text.as_bytes())
        }
        None => text.into_bytes(),
    };
    let mut properties = BasicProperties::default()
        .with_content_type(CONTENT_TYPE.into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(2)
        .with_priority(0)
        .with_headers(headers);
    if let Some(ms) = expiration_ms {
        properties = properties.with_expiration(ms.to_string().into());
    }
    Ok(Outgoing { body, properties })
}

/// Decodes a delivery into the inner message map (envelope or legacy form).
pub fn decode(properties: &BasicProperties, data: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    check_content_type(properties)?;
    let body = decompress(properties, data)?;
    decode_json_body(&body)
}

/// Decodes a body already known to be uncompressed JSON (used for vectors).
pub fn decode_json_body(body: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(DecodeError::TooLarge { size: body.len(), max: MAX_BODY_BYTES });
    }
    let text = std::str::from_utf8(body).map_err(|e| DecodeError::InvalidUtf8(e.valid_up_to()))?;
    let mut outer = parse_object(text)?;
    let (Some(version), Some(_)) = (outer.get(VERSION_KEY), outer.get(MESSAGE_KEY)) else {
        // The legacy form: the inner dict itself.
        return Ok(outer);
    };
    let version = version.as_str().ok_or(DecodeError::BadField { field: "oslo.version", reason: "is not a string" })?;
    if !crate::target::version_is_compatible(ENVELOPE_VERSION, version) {
        return Err(DecodeError::EnvelopeVersion(version.to_owned()));
    }
    match outer.remove(MESSAGE_KEY) {
        Some(Value::String(inner)) => parse_object(&inner),
        _ => Err(DecodeError::BadField { field: "oslo.message", reason: "is not a string" }),
    }
}

fn parse_object(text: &str) -> Result<Map<String, Value>, DecodeError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(DecodeError::NotAnObject),
        Err(e) if e.to_string().contains("recursion limit") => Err(DecodeError::TooDeep),
        Err(e) => Err(DecodeError::NotJson(Arc::new(e))),
    }
}

fn check_content_type(properties: &BasicProperties) -> Result<(), DecodeError> {
    match properties.content_type() {
        None => Err(DecodeError::MissingContentType),
        Some(ct) if ct.as_str() == CONTENT_TYPE => Ok(()),
        Some(ct) => Err(DecodeError::UnsupportedContentType(ct.to_string())),
    }
}

fn compression_header(properties: &BasicProperties) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(&ShortString::from("compression"))? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn decompress<'a>(properties: &BasicProperties, data: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, DecodeError> {
    let Some(header) = compression_header(properties) else {
        return Ok(std::borrow::Cow::Borrowed(data));
    };
    // kombu's decoder registry resolves aliases too; `application/x-zlib`
    // was written by old kombu releases.
    let codec = if header == "application/x-zlib" { Some(Compression::Gzip) } else { Compression::from_name(&header) };
    match codec {
        Some(codec) => codec.decompress(data).map(std::borrow::Cow::Owned),
        None => Err(DecodeError::UnsupportedCompression(header)),
    }
}

fn zlib_compress(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Python's `bz2.compress` default: level 9 (900 kB blocks, header `BZh9`).
fn bzip2_compress(data: &[u8]) -> Vec<u8> {
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// An RPC request (call or cast) as oslo's `RPCClient` builds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The method name.
    pub method: String,
    /// Keyword arguments.
    pub args: Map<String, Value>,
    /// `namespace`, only when the target has one.
    pub namespace: Option<String>,
    /// `version`; missing means `1.0`.
    pub version: Option<String>,
    /// `_msg_id`: present on calls.
    pub msg_id: Option<String>,
    /// `_reply_q`: present on calls.
    pub reply_q: Option<String>,
    /// `_timeout`: the call-monitor timeout of a call (null when unset).
    pub timeout: Option<Value>,
    /// `_unique_id`, for duplicate suppression.
    pub unique_id: Option<String>,
    /// The `_context_*` members.
    pub context: Context,
    /// Members this crate does not know, kept for re-encoding.
    pub extra: Map<String, Value>,
}

impl Request {
    /// Reads a decoded inner message. Only wrong types of known members are
    /// errors; unknown members are kept in `extra`, as oslo ignores them.
    pub fn from_message(mut msg: Map<String, Value>) -> Result<Self, DecodeError> {
        let context = Context::unpack(&mut msg);
        let method = match msg.remove("method") {
            Some(Value::String(m)) => m,
            Some(_) => return Err(DecodeError::BadField { field: "method", reason: "is not a string" }),
            None => return Err(DecodeError::BadField { field: "method", reason: "is missing" }),
        };
        let args = match msg.remove("args") {
            Some(Value::Object(a)) => a,
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err(DecodeError::BadField { field: "args", reason: "is not an object" }),
        };
        Ok(Self {
            method,
            args,
            namespace: opt_string(&mut msg, "namespace")?,
            version: opt_string(&mut msg, "version")?,
            msg_id: opt_string(&mut msg, "_msg_id")?,
            reply_q: opt_string(&mut msg, "_reply_q")?,
            timeout: msg.remove("_timeout"),
            unique_id: opt_string(&mut msg, "_unique_id")?,
            context,
            extra: msg,
        })
    }

    /// The inner message, members in the order oslo writes them.
    pub fn to_message(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("method".into(), Value::String(self.method.clone()));
        m.insert("args".into(), Value::Object(self.args.clone()));
        if let Some(ns) = &self.namespace {
            m.insert("namespace".into(), Value::String(ns.clone()));
        }
        if let Some(v) = &self.version {
            m.insert("version".into(), Value::String(v.clone()));
        }
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        if let Some(id) = &self.msg_id {
            m.insert("_msg_id".into(), Value::String(id.clone()));
            m.insert("_reply_q".into(), self.reply_q.clone().map_or(Value::Null, Value::String));
            m.insert("_timeout".into(), self.timeout.clone().unwrap_or(Value::Null));
        }
        if let Some(u) = &self.unique_id {
            m.insert("_unique_id".into(), Value::String(u.clone()));
        }
        self.context.pack_into(&mut m);
        m
    }

    /// The call-monitor timeout in whole seconds (`int(_timeout)`), if any.
    pub fn call_monitor_timeout(&self) -> Option<u64> {
        match self.timeout.as_ref()? {
            Value::Number(n) => n.as_f64().filter(|t| *t >= 0.0).map(|t| t as u64),
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|t| *t >= 0.0).map(|t| t as u64),
            _ => None,
        }
    }
}

fn opt_string(msg: &mut Map<String, Value>, field: &'static str) -> Result<Option<String>, DecodeError> {
    match msg.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(DecodeError::BadField { field, reason: "is not a string" }),
    }
}

/// A reply (final or call-monitor heartbeat).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The result (null for failures and heartbeats).
    pub result: Value,
    /// The serialized exception string, when the call failed.
    pub failure: Option<String>,
    /// False only on call-monitor heartbeats.
    pub ending: bool,
    /// The request's `_msg_id`.
    pub msg_id: Option<String>,
    /// `_unique_id` of this reply.
    pub unique_id: Option<String>,
}

impl Reply {
    /// The inner message, exactly as oslo's `_send_reply` builds it.
    pub fn to_message(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("result".into(), self.result.clone());
        m.insert("failure".into(), self.failure.clone().map_or(Value::Null, Value::String));
        m.insert("ending".into(), Value::Bool(self.ending));
        m.insert("_msg_id".into(), self.msg_id.clone().map_or(Value::Null, Value::String));
        if let Some(u) = &self.unique_id {
            m.insert("_unique_id".into(), Value::String(u.clone()));
        }
        m
    }

    /// Reads a decoded reply.
    pub fn from_message(mut msg: Map<String, Value>) -> Result<Self, DecodeError> {
        let failure = match msg.remove("failure") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            // Some old peers sent the failure dict itself.
            Some(Value::Object(o)) => Some(json::dumps(&o).map_err(|e| DecodeError::Failure(Arc::new(e)))?),
            Some(_) => return Err(DecodeError::BadField { field: "failure", reason: "is not a string" }),
        };
        Ok(Self {
            result: msg.remove("result").unwrap_or(Value::Null),
            failure,
            ending: msg.remove("ending").and_then(|v| v.as_bool()).unwrap_or(false),
            msg_id: opt_string(&mut msg, "_msg_id")?,
            unique_id: opt_string(&mut msg, "_unique_id")?,
        })
    }
}

/// A fresh `uuid4().hex`.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn props() -> BasicProperties {
        BasicProperties::default().with_content_type(CONTENT_TYPE.into())
    }

    #[test]
    fn envelope_round_trip_and_legacy_form() {
        let inner = json!({"method": "ping", "args": {"arg": "é"}}).as_object().cloned().unwrap();
        let out = encode(&inner, Some(60000), None).unwrap();
        assert_eq!(out.properties.expiration().as_ref().map(|e| e.as_str()), Some("60000"));
        assert_eq!(decode(&out.properties, &out.body).unwrap(), inner);
        assert_eq!(decode(&props(), br#"{"method": "legacy", "args": {}}"#).unwrap()["method"], "legacy");
    }

    #[test]
    fn gzip_compression_is_zlib_with_kombu_header() {
        let inner = json!({"method": "m", "args": {}}).as_object().cloned().unwrap();
        let out = encode(&inner, None, Some("gzip")).unwrap();
        assert_eq!(&out.body[..1], &[0x78], "zlib stream header");
        assert_eq!(decode(&out.properties, &out.body).unwrap(), inner);
    }

    #[test]
    fn bzip2_compression_is_a_bz2_stream_with_kombu_header() {
        let inner = json!({"method": "m", "args": {"pad": "x".repeat(1000)}}).as_object().cloned().unwrap();
        for name in ["bz2", "bzip2", "bzip", BZIP2_COMPRESSION] {
            let out = encode(&inner, None, Some(name)).unwrap();
            assert_eq!(&out.body[..4], b"BZh9", "{name}: bzip2 stream, Python's default level");
            let headers = out.properties.headers().as_ref().unwrap();
            assert_eq!(
                headers.inner().get(&ShortString::from("compression")),
                Some(&AMQPValue::LongString(BZIP2_COMPRESSION.into()))
            );
            assert!(out.body.len() < 200, "compressed: {} bytes", out.body.len());
            assert_eq!(decode(&out.properties, &out.body).unwrap(), inner);
        }
    }

    #[test]
    fn corrupt_and_unknown_compression_are_reasons() {
        let mut bz2 = FieldTable::default();
        bz2.insert(ShortString::from("compression"), AMQPValue::LongString(BZIP2_COMPRESSION.into()));
        let p = props().with_headers(bz2);
        assert!(matches!(decode(&p, b"BZh9 not really"), Err(DecodeError::Decompress(_))));
        let mut lzma = FieldTable::default();
        lzma.insert(ShortString::from("compression"), AMQPValue::LongString("application/x-lzma".into()));
        assert!(matches!(
            decode(&props().with_headers(lzma), b"x"),
            Err(DecodeError::UnsupportedCompression(c)) if c == "application/x-lzma"
        ));
        // A bzip2 bomb: 32 MiB of spaces compress to a few hundred bytes.
        let bomb = bzip2_compress(&vec![b' '; MAX_BODY_BYTES + 1]);
        let mut h = FieldTable::default();
        h.insert(ShortString::from("compression"), AMQPValue::LongString(BZIP2_COMPRESSION.into()));
        assert!(matches!(decode(&props().with_headers(h), &bomb), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn malformed_bodies_have_reasons() {
        assert!(matches!(decode(&BasicProperties::default(), b"{}"), Err(DecodeError::MissingContentType)));
        assert!(matches!(decode(&props(), b"not json"), Err(DecodeError::NotJson(_))));
        assert!(matches!(decode(&props(), b"{\"a\": \"\xff\"}"), Err(DecodeError::InvalidUtf8(_))));
        assert!(matches!(decode(&props(), b"[1]"), Err(DecodeError::NotAnObject)));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(decode(&props(), deep.as_bytes()), Err(DecodeError::TooDeep)));
        assert!(matches!(
            decode(&props(), br#"{"oslo.version": "3.0", "oslo.message": "{}"}"#),
            Err(DecodeError::EnvelopeVersion(v)) if v == "3.0"
        ));
        let not_json = decode(&props(), b"not json").unwrap_err();
        assert!(std::error::Error::source(&not_json).is_some(), "the parser's error is kept as the cause");
        let huge = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(matches!(decode(&props(), &huge), Err(DecodeError::TooLarge { .. })));
        assert!(matches!(
            Request::from_message(json!({"method": 1}).as_object().cloned().unwrap()),
            Err(DecodeError::BadField { field: "method", .. })
        ));
    }
}
