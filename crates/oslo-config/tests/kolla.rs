//! A nova.conf shaped like the one Kolla-Ansible generates for nova_compute:
//! the options we read come out typed; the many we do not read are ignored.

mod common;

use oslo_config::groups::{ImagesType, NotificationFormat, NotifyOnStateChange, VirtType};
use oslo_config::Config;

fn kolla() -> Config {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kolla-nova-compute.conf");
    Config::from_files([path]).expect("the Kolla nova.conf loads")
}

#[test]
fn default_group() {
    let cfg = kolla();
    assert!(cfg.default.debug);
    assert_eq!(cfg.default.log_dir.as_deref(), Some("/var/log/kolla/nova"));
    assert_eq!(cfg.default.state_path, "/var/lib/nova");
    assert_eq!(cfg.default.instances_path, "/var/lib/nova/instances");
    assert_eq!(cfg.default.host, "compute01");
    assert_eq!(
        cfg.default.transport_url.expose(),
        "rabbit://openstack:secret@192.0.2.10:5672,openstack:secret@192.0.2.11:5672//"
    );
    assert_eq!(cfg.default.control_exchange, "nova");
    assert_eq!(cfg.default.max_concurrent_snapshots, 5);
    assert_eq!(cfg.default.report_interval, 10);
}

#[test]
fn rabbit_group() {
    let r = &kolla().oslo_messaging_rabbit;
    assert!(r.rabbit_quorum_queue && r.rabbit_transient_quorum_queue);
    assert!(r.rabbit_stream_fanout && r.use_queue_manager);
    assert_eq!(r.rabbit_qos_prefetch_count, 1);
    assert_eq!((r.heartbeat_timeout_threshold, r.heartbeat_rate), (30, 2));
    assert_eq!(r.rabbit_transient_queues_ttl, 1800);
    assert!(!r.amqp_durable_queues && !r.ssl);
}

#[test]
fn libvirt_glance_service_user() {
    let cfg = kolla();
    assert_eq!(cfg.libvirt.connection_uri, "qemu+tcp://192.0.2.20/system");
    assert_eq!(cfg.libvirt.effective_uri(), "qemu+tcp://192.0.2.20/system");
    assert_eq!(cfg.libvirt.virt_type, VirtType::Kvm);
    assert_eq!(cfg.libvirt.images_type, ImagesType::Qcow2);
    assert_eq!(cfg.libvirt.snapshots_directory, "/var/lib/nova/instances/snapshots");
    assert_eq!(cfg.glance.api_servers, ["https://192.0.2.5:9292"]);
    assert_eq!(cfg.glance.cafile.as_deref(), Some("/etc/pki/ca-trust/source/anchors/kolla-customca-root.crt"));
    assert_eq!(cfg.glance.valid_interfaces, ["internal", "public"]);
    let su = &cfg.service_user;
    assert!(su.send_service_user_token);
    assert_eq!(su.auth_type.as_deref(), Some("password"));
    assert_eq!(su.username.as_deref(), Some("nova"));
    assert_eq!(su.password.as_ref().map(|p| p.expose()), Some("novapass"));
    assert_eq!(su.project_domain_id.as_deref(), Some("default"));
    assert!(!cfg.workarounds.disable_libvirt_livesnapshot);
    assert_eq!(cfg.upgrade_levels.compute.as_deref(), Some("auto"));
}

#[test]
fn notifications() {
    let cfg = kolla();
    assert_eq!(cfg.oslo_messaging_notifications.driver, ["messagingv2"]);
    assert_eq!(cfg.oslo_messaging_notifications.topics, ["notifications_designate"]);
    assert_eq!(cfg.notifications.notification_format, NotificationFormat::Both);
    assert_eq!(cfg.notifications.notify_on_state_change, Some(NotifyOnStateChange::VmAndTaskState));
}

#[test]
fn no_secret_in_debug_or_dump() {
    let cfg = kolla();
    for text in [format!("{cfg:?}"), cfg.dump_json()] {
        for secret in ["secret@", "novapass"] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
    }
    let json: serde_json::Value = serde_json::from_str(&cfg.dump_json()).unwrap();
    assert_eq!(
        json["DEFAULT"]["transport_url"],
        "rabbit://openstack:***@192.0.2.10:5672,openstack:***@192.0.2.11:5672//"
    );
    assert_eq!(json["service_user"]["password"], "***");
    assert_eq!(json["snapshot_engine"]["live_strategy"], "backup");
}
