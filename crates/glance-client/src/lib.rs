//! A Glance v2 client with Keystone v3 authentication, shaped for nova-compute.
//!
//! Owns: Keystone v3 tokens (password, application credential) used as
//! `X-Service-Token`, endpoint selection (`[glance] api_servers` or the service
//! catalog), image get / json-patch update / delete / filtered list, and the
//! streaming upload of a reserved image with retries and hash verification.
//!
//! Must not know: instances, task states or libvirt. It receives a user token,
//! a request id and a file (or stream) and reports what Glance said.
