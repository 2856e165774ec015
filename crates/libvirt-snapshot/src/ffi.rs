//! The safe wrapper over the libvirt calls the `virt` crate has no safe
//! binding for: opening a connection with an auth callback that can refuse
//! (`virConnectOpenAuth`; `virt`'s callback cannot return an error), block
//! copy (typed parameters), block-job info / speed / abort, backup begin and
//! its XML, domain job abort, filesystem freeze / thaw, domain event
//! callbacks and the connection-close callback.
//!
//! This is the only module of the workspace with `unsafe`. Every block states
//! the invariant it relies on; every function here is exercised by the unit
//! tests below (test driver) or by the real-guest tests in `tests/`.
//!
//! libvirt reports errors in thread-local storage: each wrapper reads the
//! error (`virt::error::Error::last_error`) right after the failing call, in
//! the same thread, before anything else can overwrite it.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::Error;
use virt::sys;

use crate::events::{self, BlockJobStatus, BlockJobType, DomainEvent, JobCompleted};

fn cstring(value: &str) -> Result<CString, Error> {
    CString::new(value).map_err(Error::from)
}

/// A credential libvirt asked the application for because no auth.conf
/// entry supplied it (one `virConnectCredential` passed to the callback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedCredential {
    /// The auth.conf key that would have supplied it (`authname`,
    /// `password`, `username`, `realm`), or libvirt's name of the
    /// credential type when auth.conf has no key for it.
    pub name: &'static str,
    /// libvirt's prompt text (e.g. "Please enter your authentication name").
    pub prompt: String,
}

/// The credential types nova's `Host._connect` offers in `openAuth`:
/// AUTHNAME, ECHOPROMPT, REALM, PASSPHRASE, NOECHOPROMPT, EXTERNAL. SASL can
/// only ask for types listed here; libvirt fills them from auth.conf first.
const OFFERED_CREDENTIALS: [sys::virConnectCredentialType; 6] = [
    sys::VIR_CRED_AUTHNAME,
    sys::VIR_CRED_ECHOPROMPT,
    sys::VIR_CRED_REALM,
    sys::VIR_CRED_PASSPHRASE,
    sys::VIR_CRED_NOECHOPROMPT,
    sys::VIR_CRED_EXTERNAL,
];

fn credential_name(kind: c_int) -> &'static str {
    match kind as sys::virConnectCredentialType {
        sys::VIR_CRED_USERNAME => "username",
        sys::VIR_CRED_AUTHNAME => "authname",
        sys::VIR_CRED_PASSPHRASE => "password",
        sys::VIR_CRED_REALM => "realm",
        sys::VIR_CRED_LANGUAGE => "language",
        sys::VIR_CRED_CNONCE => "cnonce",
        sys::VIR_CRED_ECHOPROMPT => "echoprompt",
        sys::VIR_CRED_NOECHOPROMPT => "noechoprompt",
        sys::VIR_CRED_EXTERNAL => "external",
        _ => "unknown",
    }
}

/// Why [`open_auth`] failed: libvirt's error, and the credentials libvirt
/// asked for that no auth.conf held (empty when it never asked).
#[derive(Debug)]
pub struct OpenAuthError {
    /// libvirt's error for the failed open.
    pub error: Error,
    /// The credentials libvirt asked the callback for (none: it never asked).
    pub requested: Vec<RequestedCredential>,
}

/// nova's `_connect_auth_cb`: libvirt calls it after filling what it could
/// from auth.conf (`remoteAuthInteract`), with the credentials still
/// missing. None missing: accept (0). Any missing: record them and refuse
/// (-1), so the open fails with VIR_ERR_AUTH_FAILED at once; nothing is ever
/// prompted for.
///
/// # Safety
/// Only libvirt calls it, as the `virConnectAuth` callback of [`open_auth`]:
/// `cred` points to `ncred` initialised credentials and `cbdata` is that
/// call's `&mut Vec<RequestedCredential>`, both valid until it returns.
unsafe extern "C" fn refuse_missing_credentials(
    cred: sys::virConnectCredentialPtr,
    ncred: c_uint,
    cbdata: *mut c_void,
) -> c_int {
    if ncred == 0 {
        return 0;
    }
    no_unwind("auth", || {
        // SAFETY: `cbdata` is the `&mut Vec<RequestedCredential>` of the
        // `open_auth` frame that is blocked in virConnectOpenAuth right now:
        // libvirt calls this synchronously from inside that call, in the
        // same thread, and keeps no reference to `auth` after it returns.
        let requested = unsafe { &mut *(cbdata as *mut Vec<RequestedCredential>) };
        for i in 0..ncred as usize {
            // SAFETY: libvirt passes an array of `ncred` initialised
            // credentials; `prompt` is NULL or a NUL-terminated string that
            // lives until the callback returns (we copy it).
            let c = unsafe { &*cred.add(i) };
            let prompt = if c.prompt.is_null() {
                String::new()
            } else {
                // SAFETY: non-NULL, NUL-terminated (see above).
                unsafe { CStr::from_ptr(c.prompt) }.to_string_lossy().into_owned()
            };
            requested.push(RequestedCredential { name: credential_name(c.type_), prompt });
        }
    });
    -1
}

/// `virConnectOpenAuth(uri, {nova's credential types, refuse_missing_credentials}, 0)`:
/// a read-write connection whose credentials come from libvirt's own
/// auth.conf lookup (`LIBVIRT_AUTH_FILE`, the URI's `authfile=`,
/// `$XDG_CONFIG_HOME/libvirt/auth.conf` i.e. `~/.config/libvirt/auth.conf`,
/// `/etc/libvirt/auth.conf`). Whatever the file does not hold is refused,
/// never prompted for.
pub fn open_auth(uri: &str) -> Result<Connect, OpenAuthError> {
    let c_uri = cstring(uri).map_err(|error| OpenAuthError { error, requested: Vec::new() })?;
    let mut credtypes: Vec<c_int> = OFFERED_CREDENTIALS.iter().map(|&t| t as c_int).collect();
    let mut requested: Vec<RequestedCredential> = Vec::new();
    let mut auth = sys::virConnectAuth {
        credtype: credtypes.as_mut_ptr(),
        ncredtype: credtypes.len() as c_uint,
        cb: Some(refuse_missing_credentials),
        cbdata: (&mut requested as *mut Vec<RequestedCredential>).cast::<c_void>(),
    };
    // SAFETY: `c_uri` is NUL-terminated; `auth`, the `credtypes` array it
    // points to and `requested` (its cbdata) all outlive the call, which
    // uses them only while it runs (the callback runs synchronously inside
    // it). A non-NULL result is a new connection reference we own.
    let raw = unsafe { sys::virConnectOpenAuth(c_uri.as_ptr(), &mut auth, 0) };
    if raw.is_null() {
        // Read in this thread, right after the failing call.
        let error = Error::last_error();
        return Err(OpenAuthError { error, requested });
    }
    // SAFETY: `raw` is a valid connection whose reference passes to the
    // `Connect`, which closes it on drop.
    Ok(unsafe { Connect::from_ptr(raw) })
}

/// `virDomainBlockCopy` typed parameters (`VIR_DOMAIN_BLOCK_COPY_*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockCopyParams {
    /// Bytes per second; `None` = unlimited.
    pub bandwidth: Option<u64>,
    /// Dirty-bitmap granularity in bytes (power of two, 512 B .. 64 MiB).
    pub granularity: Option<u32>,
    /// Size of the copy buffer in bytes.
    pub buf_size: Option<u64>,
}

/// `virDomainBlockCopy` flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCopyFlags {
    /// Copy only the top layer (the destination has the same backing chain).
    pub shallow: bool,
    /// The destination exists already (created by us with `qemu-img create`).
    pub reuse_ext: bool,
    /// The job does not require a transient domain (libvirt >= 3.5).
    pub transient_job: bool,
    /// Active mirror: guest writes reach both sides before completing, so the
    /// job converges under any write load (libvirt >= 8.0).
    pub synchronous_writes: bool,
}

impl BlockCopyFlags {
    fn bits(self) -> c_uint {
        let mut f = 0;
        if self.shallow {
            f |= sys::VIR_DOMAIN_BLOCK_COPY_SHALLOW;
        }
        if self.reuse_ext {
            f |= sys::VIR_DOMAIN_BLOCK_COPY_REUSE_EXT;
        }
        if self.transient_job {
            f |= sys::VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB;
        }
        if self.synchronous_writes {
            f |= sys::VIR_DOMAIN_BLOCK_COPY_SYNCHRONOUS_WRITES;
        }
        f
    }
}

/// An owned `virTypedParameter` array built with `virTypedParamsAdd*`,
/// freed with `virTypedParamsFree`.
struct TypedParams {
    ptr: sys::virTypedParameterPtr,
    len: c_int,
    cap: c_int,
}

impl TypedParams {
    fn new() -> Self {
        TypedParams { ptr: ptr::null_mut(), len: 0, cap: 0 }
    }

    fn add_ullong(&mut self, name: &CStr, value: u64) -> Result<(), Error> {
        // SAFETY: `ptr/len/cap` are either the initial (null, 0, 0) triple or
        // what a previous virTypedParamsAdd* left; libvirt reallocates the
        // array itself. `name` is a NUL-terminated constant from virt-sys.
        let rc =
            unsafe { sys::virTypedParamsAddULLong(&mut self.ptr, &mut self.len, &mut self.cap, name.as_ptr(), value) };
        if rc < 0 {
            return Err(Error::last_error());
        }
        Ok(())
    }

    fn add_uint(&mut self, name: &CStr, value: u32) -> Result<(), Error> {
        // SAFETY: as in `add_ullong`.
        let rc =
            unsafe { sys::virTypedParamsAddUInt(&mut self.ptr, &mut self.len, &mut self.cap, name.as_ptr(), value) };
        if rc < 0 {
            return Err(Error::last_error());
        }
        Ok(())
    }
}

impl Drop for TypedParams {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: `ptr` holds `len` parameters allocated by libvirt and is
            // freed exactly once, here.
            unsafe { sys::virTypedParamsFree(self.ptr, self.len) };
        }
    }
}

/// `virDomainBlockCopy(dom, disk, destxml, params, flags)`.
pub fn block_copy(
    dom: &Domain,
    disk: &str,
    dest_xml: &str,
    params: &BlockCopyParams,
    flags: BlockCopyFlags,
) -> Result<(), Error> {
    let disk = cstring(disk)?;
    let dest_xml = cstring(dest_xml)?;
    let mut tp = TypedParams::new();
    if let Some(bw) = params.bandwidth {
        tp.add_ullong(sys::VIR_DOMAIN_BLOCK_COPY_BANDWIDTH, bw)?;
    }
    if let Some(g) = params.granularity {
        tp.add_uint(sys::VIR_DOMAIN_BLOCK_COPY_GRANULARITY, g)?;
    }
    if let Some(b) = params.buf_size {
        tp.add_ullong(sys::VIR_DOMAIN_BLOCK_COPY_BUF_SIZE, b)?;
    }
    // SAFETY: `dom` is a live reference-counted domain handle for the whole
    // call; the strings are NUL-terminated and outlive the call; `tp` holds
    // `tp.len` initialised parameters (or null with 0).
    let rc = unsafe {
        sys::virDomainBlockCopy(dom.as_ptr(), disk.as_ptr(), dest_xml.as_ptr(), tp.ptr, tp.len, flags.bits())
    };
    if rc < 0 {
        return Err(Error::last_error());
    }
    Ok(())
}

/// What `virDomainGetBlockJobInfo` reports for a disk's current job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockJobInfo {
    /// The job's type.
    pub job_type: BlockJobType,
    /// Bytes per second (`VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES`).
    pub bandwidth: u64,
    /// Progress so far, in the job's units (bytes for a copy).
    pub cur: u64,
    /// Where `cur` ends (it may grow while the guest writes).
    pub end: u64,
}

/// `virDomainGetBlockJobInfo`: `None` when the disk has no job. "No job" says
/// nothing about how a job ended (nova bug 1627134): callers learn that from
/// events, never from this.
pub fn block_job_info(dom: &Domain, disk: &str) -> Result<Option<BlockJobInfo>, Error> {
    let disk = cstring(disk)?;
    let mut info = sys::virDomainBlockJobInfo { type_: 0, bandwidth: 0, cur: 0, end: 0 };
    // SAFETY: `info` is a properly aligned, writable struct of the layout
    // libvirt fills; `dom` and `disk` are valid for the call.
    let rc = unsafe {
        sys::virDomainGetBlockJobInfo(
            dom.as_ptr(),
            disk.as_ptr(),
            &mut info,
            sys::VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES,
        )
    };
    match rc {
        r if r < 0 => Err(Error::last_error()),
        0 => Ok(None),
        _ => Ok(Some(BlockJobInfo {
            job_type: BlockJobType::from_raw(info.type_),
            // c_ulong is 64-bit on every platform QEMU/KVM hosts run.
            #[allow(clippy::useless_conversion)]
            bandwidth: u64::from(info.bandwidth),
            cur: info.cur,
            end: info.end,
        })),
    }
}

/// `virDomainBlockJobAbort(dom, disk, flags)`. `pivot = false` cancels a copy
/// without switching the guest to the destination.
pub fn block_job_abort(dom: &Domain, disk: &str, asynchronous: bool, pivot: bool) -> Result<(), Error> {
    let disk = cstring(disk)?;
    let mut flags = 0;
    if asynchronous {
        flags |= sys::VIR_DOMAIN_BLOCK_JOB_ABORT_ASYNC;
    }
    if pivot {
        flags |= sys::VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT;
    }
    // SAFETY: `dom` and `disk` are valid for the duration of the call.
    let rc = unsafe { sys::virDomainBlockJobAbort(dom.as_ptr(), disk.as_ptr(), flags) };
    if rc < 0 {
        return Err(Error::last_error());
    }
    Ok(())
}

/// `virDomainBackupBegin(dom, backupXML, NULL, flags)`: no checkpoint.
/// `reuse_external`: the push target exists already (created by us), so
/// libvirt does not format it inside the call.
pub fn backup_begin(dom: &Domain, backup_xml: &str, reuse_external: bool) -> Result<(), Error> {
    let xml = cstring(backup_xml)?;
    let flags = if reuse_external { sys::VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL } else { 0 };
    // SAFETY: `dom` and `xml` are valid for the call; a null checkpoint XML
    // is documented as "no checkpoint".
    let rc = unsafe { sys::virDomainBackupBegin(dom.as_ptr(), xml.as_ptr(), ptr::null(), flags) };
    if rc < 0 {
        return Err(Error::last_error());
    }
    Ok(())
}

/// `virDomainBackupGetXMLDesc`: the XML of the running backup job (fails with
/// `VIR_ERR_NO_DOMAIN_BACKUP` when there is none).
pub fn backup_xml_desc(dom: &Domain) -> Result<String, Error> {
    // SAFETY: `dom` is valid for the call.
    let raw = unsafe { sys::virDomainBackupGetXMLDesc(dom.as_ptr(), 0) };
    if raw.is_null() {
        return Err(Error::last_error());
    }
    // SAFETY: libvirt returned a NUL-terminated heap string that the caller
    // owns (documented: "must be freed by the caller"); it is copied here.
    // It is released once with `free`: libvirt allocates with g_malloc,
    // which is the C allocator since GLib 2.46 (the `virt` crate frees
    // libvirt strings the same way).
    let xml = unsafe { CStr::from_ptr(raw) }.to_string_lossy().into_owned();
    // SAFETY: see above; `raw` is not used afterwards.
    unsafe { libc_free(raw.cast()) };
    Ok(xml)
}

extern "C" {
    #[link_name = "free"]
    fn libc_free(ptr: *mut c_void);
}

/// `virDomainAbortJob`: aborts the domain's async job (here: a backup).
pub fn abort_job(dom: &Domain) -> Result<(), Error> {
    // SAFETY: `dom` is valid for the call.
    let rc = unsafe { sys::virDomainAbortJob(dom.as_ptr()) };
    if rc < 0 {
        return Err(Error::last_error());
    }
    Ok(())
}

/// `virDomainFSFreeze(dom, NULL, 0, 0)`: freezes every mounted filesystem
/// through the guest agent; returns how many were frozen.
pub fn fs_freeze(dom: &Domain) -> Result<u32, Error> {
    // SAFETY: `dom` is valid; a null mount-point list with count 0 means
    // "all filesystems".
    let rc = unsafe { sys::virDomainFSFreeze(dom.as_ptr(), ptr::null_mut(), 0, 0) };
    if rc < 0 {
        return Err(Error::last_error());
    }
    Ok(rc as u32)
}

/// `virDomainFSThaw(dom, NULL, 0, 0)`; returns how many were thawed (0 when
/// nothing was frozen, which makes it safe to repeat).
pub fn fs_thaw(dom: &Domain) -> Result<u32, Error> {
    // SAFETY: as in `fs_freeze`.
    let rc = unsafe { sys::virDomainFSThaw(dom.as_ptr(), ptr::null_mut(), 0, 0) };
    if rc < 0 {
        return Err(Error::last_error());
    }
    Ok(rc as u32)
}

// --- events -------------------------------------------------------------------

/// The UUID (and nothing else) of the domain an event is about: we never take
/// a reference on the callback's domain pointer.
fn event_domain_uuid(dom: sys::virDomainPtr) -> Option<String> {
    let mut buf = [0 as c_char; sys::VIR_UUID_STRING_BUFLEN as usize];
    // SAFETY: libvirt passes a domain pointer valid for the duration of the
    // callback; `buf` has VIR_UUID_STRING_BUFLEN bytes as the API requires.
    let rc = unsafe { sys::virDomainGetUUIDString(dom, buf.as_mut_ptr()) };
    if rc < 0 {
        return None;
    }
    // SAFETY: on success libvirt wrote a NUL-terminated string into `buf`.
    Some(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

/// Runs `f` and swallows a panic: unwinding out of an `extern "C"` callback
/// would abort the process.
fn no_unwind(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        tracing::error!(callback = what, "panic in a libvirt event callback (ignored)");
    }
}

/// `VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2` callback: forwards the event to its domain's subscribers.
///
/// # Safety
/// Only libvirt calls it (registered by [`register_event`]): `dom` is a
/// domain valid for the call, `disk` NULL or a NUL-terminated string valid
/// for the call.
unsafe extern "C" fn on_block_job(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    disk: *const c_char,
    job_type: c_int,
    status: c_int,
    _opaque: *mut c_void,
) {
    no_unwind("block-job-2", || {
        let Some(uuid) = event_domain_uuid(dom) else {
            return;
        };
        let disk = if disk.is_null() {
            String::new()
        } else {
            // SAFETY: libvirt passes a NUL-terminated target name valid for
            // the callback's duration.
            unsafe { CStr::from_ptr(disk) }.to_string_lossy().into_owned()
        };
        let event = DomainEvent::BlockJob {
            disk,
            job_type: BlockJobType::from_raw(job_type),
            status: BlockJobStatus::from_raw(status),
        };
        events::dispatch(&uuid, event);
    });
}

/// Reads job statistics / job-completed typed parameters.
///
/// # Safety
/// `params` must point to `nparams` initialised parameters (or be null with
/// `nparams <= 0`), valid for the duration of the call.
unsafe fn parse_job_params(params: sys::virTypedParameterPtr, nparams: c_int) -> JobCompleted {
    let mut done = JobCompleted::default();
    if params.is_null() {
        return done;
    }
    for i in 0..nparams.max(0) as usize {
        // SAFETY: `i < nparams` per the function's contract.
        let p = unsafe { &*params.add(i) };
        // SAFETY: `field` is a NUL-terminated name (VIR_TYPED_PARAM_FIELD_LENGTH).
        let name = unsafe { CStr::from_ptr(p.field.as_ptr()) }.to_bytes();
        // SAFETY: each union member is read only when `type_` says it is the
        // active one; a string member is NUL-terminated when non-null.
        unsafe {
            match (name, p.type_ as u32) {
                (b"operation", sys::VIR_TYPED_PARAM_INT) => done.operation = Some(p.value.i),
                (b"success", sys::VIR_TYPED_PARAM_BOOLEAN) => done.success = Some(p.value.b != 0),
                (b"errmsg", sys::VIR_TYPED_PARAM_STRING) if !p.value.s.is_null() => {
                    done.error = Some(CStr::from_ptr(p.value.s).to_string_lossy().into_owned())
                }
                (b"disk_total", sys::VIR_TYPED_PARAM_ULLONG) => done.disk_total = Some(p.value.ul),
                (b"disk_processed", sys::VIR_TYPED_PARAM_ULLONG) => done.disk_processed = Some(p.value.ul),
                (b"time_elapsed", sys::VIR_TYPED_PARAM_ULLONG) => done.time_elapsed_ms = Some(p.value.ul),
                _ => {}
            }
        }
    }
    done
}

/// `virDomainGetJobStats`: the domain job's type (`virDomainJobType`, 0 =
/// none) and statistics. (`virt`'s own `job_stats` builds a Vec from the
/// null pointer libvirt returns when there is no job: undefined behaviour.)
pub fn job_stats(dom: &Domain, completed: bool) -> Result<(i32, JobCompleted), Error> {
    let mut job_type: c_int = 0;
    let mut params: sys::virTypedParameterPtr = ptr::null_mut();
    let mut nparams: c_int = 0;
    let flags = if completed { sys::VIR_DOMAIN_JOB_STATS_COMPLETED } else { 0 };
    // SAFETY: `dom` is valid; the out-pointers point to live locals that
    // libvirt fills (params is allocated by libvirt, or left null).
    let rc = unsafe { sys::virDomainGetJobStats(dom.as_ptr(), &mut job_type, &mut params, &mut nparams, flags) };
    if rc < 0 {
        return Err(Error::last_error());
    }
    // SAFETY: on success `params` holds `nparams` parameters (or is null).
    let stats = unsafe { parse_job_params(params, nparams) };
    if !params.is_null() {
        // SAFETY: allocated by libvirt for us, freed once here.
        unsafe { sys::virTypedParamsFree(params, nparams) };
    }
    Ok((job_type, stats))
}

/// `VIR_DOMAIN_EVENT_ID_JOB_COMPLETED` callback: forwards the job's statistics.
///
/// # Safety
/// Only libvirt calls it (registered by [`register_event`]): `dom` is a
/// domain and `params` holds `nparams` initialised parameters, all valid for the call.
unsafe extern "C" fn on_job_completed(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    params: sys::virTypedParameterPtr,
    nparams: c_int,
    _opaque: *mut c_void,
) {
    no_unwind("job-completed", || {
        let Some(uuid) = event_domain_uuid(dom) else {
            return;
        };
        // SAFETY: libvirt passes `nparams` initialised parameters valid for
        // the callback's duration.
        let done = unsafe { parse_job_params(params, nparams) };
        events::dispatch(&uuid, DomainEvent::JobCompleted(done));
    });
}

/// `VIR_DOMAIN_EVENT_ID_LIFECYCLE` callback: forwards the event.
///
/// # Safety
/// Only libvirt calls it (registered by [`register_event`]): `dom` is a
/// domain valid for the call.
unsafe extern "C" fn on_lifecycle(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    event: c_int,
    detail: c_int,
    _opaque: *mut c_void,
) {
    no_unwind("lifecycle", || {
        let Some(uuid) = event_domain_uuid(dom) else {
            return;
        };
        events::dispatch(&uuid, DomainEvent::Lifecycle { event, detail });
    });
}

/// The domain events this engine consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    BlockJob,
    JobCompleted,
    Lifecycle,
}

/// A registered callback: deregistered with [`deregister_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackId(c_int);

/// `virConnectDomainEventRegisterAny(conn, NULL, id, cb, NULL, NULL)` for all
/// domains. The callbacks forward to [`events::dispatch`]; they carry no
/// opaque data, so nothing needs freeing.
pub fn register_event(conn: &Connect, kind: EventKind) -> Result<CallbackId, Error> {
    type BlockJobCb =
        unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *const c_char, c_int, c_int, *mut c_void);
    type JobCompletedCb =
        unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, sys::virTypedParameterPtr, c_int, *mut c_void);
    type LifecycleCb = unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, c_int, c_int, *mut c_void);
    type GenericCb = unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void);

    // SAFETY: (all three transmutes) libvirt's VIR_DOMAIN_EVENT_CALLBACK
    // casts every typed callback to the generic type and calls it back with
    // the signature that belongs to `eventID`; each pointer here is paired
    // with exactly its own event id below. Function pointers have one size.
    let (id, cb) = unsafe {
        match kind {
            EventKind::BlockJob => {
                (sys::VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, std::mem::transmute::<BlockJobCb, GenericCb>(on_block_job))
            }
            EventKind::JobCompleted => (
                sys::VIR_DOMAIN_EVENT_ID_JOB_COMPLETED,
                std::mem::transmute::<JobCompletedCb, GenericCb>(on_job_completed),
            ),
            EventKind::Lifecycle => {
                (sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE, std::mem::transmute::<LifecycleCb, GenericCb>(on_lifecycle))
            }
        }
    };
    // SAFETY: `conn` is an open connection for the call; a null domain means
    // "all domains"; the callback is a `'static` function and the opaque
    // pointer is null with no free callback.
    let rc = unsafe {
        sys::virConnectDomainEventRegisterAny(
            conn.as_ptr(),
            ptr::null_mut(),
            id as c_int,
            Some(cb),
            ptr::null_mut(),
            None,
        )
    };
    if rc < 0 {
        return Err(Error::last_error());
    }
    Ok(CallbackId(rc))
}

/// `virConnectDomainEventDeregisterAny`.
pub fn deregister_event(conn: &Connect, id: CallbackId) -> Result<(), Error> {
    // SAFETY: `conn` is open and `id` came from `register_event` on it.
    let rc = unsafe { sys::virConnectDomainEventDeregisterAny(conn.as_ptr(), id.0) };
    if rc < 0 {
        return Err(Error::last_error());
    }
    Ok(())
}

/// The connection-close callback: sets the flag of [`register_close_flag`].
///
/// # Safety
/// Only libvirt calls it, with the `opaque` given to
/// `virConnectRegisterCloseCallback` (a boxed `Arc<AtomicBool>` that lives
/// until [`free_close_flag`]).
unsafe extern "C" fn on_close(_conn: sys::virConnectPtr, reason: c_int, opaque: *mut c_void) {
    no_unwind("close", || {
        // SAFETY: `opaque` is the `Arc<AtomicBool>` boxed in
        // `register_close_flag`, alive until libvirt calls `free_close_flag`.
        let flag = unsafe { &*(opaque as *const Arc<AtomicBool>) };
        flag.store(true, Ordering::SeqCst);
        tracing::warn!(reason, "libvirt connection closed");
    });
}

/// Frees the close callback's flag.
///
/// # Safety
/// Only libvirt calls it, once, with the `opaque` leaked by
/// [`register_close_flag`]; nothing uses that pointer afterwards.
unsafe extern "C" fn free_close_flag(opaque: *mut c_void) {
    // SAFETY: `opaque` is the Box leaked in `register_close_flag`; libvirt
    // calls this exactly once when the callback is unregistered or the
    // connection is freed.
    drop(unsafe { Box::from_raw(opaque as *mut Arc<AtomicBool>) });
}

/// `virConnectRegisterCloseCallback`: `flag` is set when libvirt sees the
/// connection die (keepalive timeout, daemon restart, EOF).
pub fn register_close_flag(conn: &Connect, flag: Arc<AtomicBool>) -> Result<(), Error> {
    let opaque = Box::into_raw(Box::new(flag)).cast::<c_void>();
    // SAFETY: `conn` is open; `opaque` stays valid until libvirt calls
    // `free_close_flag`, which owns it from then on.
    let rc =
        unsafe { sys::virConnectRegisterCloseCallback(conn.as_ptr(), Some(on_close), opaque, Some(free_close_flag)) };
    if rc < 0 {
        let err = Error::last_error();
        // SAFETY: registration failed, so libvirt did not take ownership.
        drop(unsafe { Box::from_raw(opaque as *mut Arc<AtomicBool>) });
        return Err(err);
    }
    Ok(())
}

/// `virConnectUnregisterCloseCallback` (frees the flag through libvirt).
pub fn unregister_close_flag(conn: &Connect) -> Result<(), Error> {
    // SAFETY: `conn` is open and `on_close` is the callback registered on it.
    let rc = unsafe { sys::virConnectUnregisterCloseCallback(conn.as_ptr(), Some(on_close)) };
    if rc < 0 {
        return Err(Error::last_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transient domain of its own in the (process-wide) test driver, so
    /// parallel tests never see each other's state changes.
    fn test_domain() -> (Connect, Domain) {
        crate::events::ensure_event_loop().unwrap();
        let conn = Connect::open(Some("test:///default")).expect("test driver");
        let name = format!("ffi-{}", uuid::Uuid::new_v4().simple());
        let xml = format!(
            "<domain type='test'><name>{name}</name><memory>65536</memory><os><type>hvm</type></os>\
             <devices><disk type='file' device='disk'><source file='/guest/disk'/><target dev='vda'/></disk></devices></domain>"
        );
        let dom = conn.create_domain_xml(&xml, 0).expect("transient test domain");
        (conn, dom)
    }

    #[test]
    fn flags_map_to_libvirt_bits() {
        let all = BlockCopyFlags { shallow: true, reuse_ext: true, transient_job: true, synchronous_writes: true };
        assert_eq!(all.bits(), 1 | 2 | 4 | 8);
        assert_eq!(BlockCopyFlags::default().bits(), 0);
    }

    #[test]
    fn typed_params_build_and_free() {
        let mut tp = TypedParams::new();
        tp.add_ullong(sys::VIR_DOMAIN_BLOCK_COPY_BANDWIDTH, 1 << 20).unwrap();
        tp.add_uint(sys::VIR_DOMAIN_BLOCK_COPY_GRANULARITY, 65536).unwrap();
        assert_eq!(tp.len, 2);
        // SAFETY: two parameters were added above.
        let first = unsafe { &*tp.ptr };
        assert_eq!(first.type_ as u32, sys::VIR_TYPED_PARAM_ULLONG);
    }

    #[test]
    fn test_driver_block_job_calls_report_errors_not_crash() {
        let (_conn, dom) = test_domain();
        // The test driver has a disk "vda" but no block jobs.
        match block_job_info(&dom, "vda") {
            Ok(None) | Err(_) => {}
            Ok(Some(info)) => panic!("unexpected job {info:?}"),
        }
        assert!(block_job_abort(&dom, "vda", false, false).is_err());
        assert!(block_copy(
            &dom,
            "vda",
            "<disk/>",
            &BlockCopyParams { bandwidth: Some(1), ..Default::default() },
            BlockCopyFlags::default()
        )
        .is_err());
        assert!(backup_begin(&dom, "<domainbackup/>", false).is_err());
        assert!(backup_xml_desc(&dom).is_err());
        assert!(abort_job(&dom).is_err());
        // No job: type 0 and no parameters (the case `virt` gets wrong).
        if let Ok((job_type, stats)) = job_stats(&dom, false) {
            assert_eq!(job_type, 0);
            assert_eq!(stats, JobCompleted::default());
        }
        // No guest agent in the test driver: freeze/thaw fail cleanly or
        // succeed as no-ops, depending on the libvirt version.
        let _ = fs_freeze(&dom);
        let _ = fs_thaw(&dom);
        assert!(block_job_info(&dom, "no\0such").is_err(), "interior NUL is an error, not UB");
    }

    #[test]
    fn events_register_deregister_and_lifecycle_is_delivered() {
        let (conn, dom) = test_domain();
        let uuid = dom.uuid_string().unwrap();
        let sub = crate::events::subscribe(&uuid);
        let ids: Vec<_> = [EventKind::BlockJob, EventKind::JobCompleted, EventKind::Lifecycle]
            .into_iter()
            .map(|k| register_event(&conn, k).unwrap())
            .collect();
        dom.suspend().unwrap();
        dom.resume().unwrap();
        let ev = sub.recv_timeout(std::time::Duration::from_secs(5)).expect("a lifecycle event");
        assert!(matches!(ev, DomainEvent::Lifecycle { .. }), "{ev:?}");
        for id in ids {
            deregister_event(&conn, id).unwrap();
        }
        let flag = Arc::new(AtomicBool::new(false));
        // Either outcome must leave the flag owned once (no double free).
        if register_close_flag(&conn, flag.clone()).is_ok() {
            unregister_close_flag(&conn).unwrap();
        }
        assert!(!flag.load(Ordering::SeqCst));
        // libvirt may release its reference (free_close_flag) lazily.
        assert!(Arc::strong_count(&flag) <= 2);
        dom.destroy().unwrap();
    }
}
