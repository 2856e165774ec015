//! oslo value types, defaults, and the errors for bad values.

mod common;

use common::{error, load};

#[test]
fn defaults_are_novas() {
    let cfg = load("").unwrap();
    let d = &cfg.default;
    assert_eq!(d.state_path, "/var/lib/nova");
    assert_eq!(d.instances_path, "/var/lib/nova/instances");
    assert_eq!(d.transport_url.expose(), "rabbit://");
    assert_eq!((d.rpc_response_timeout, d.long_rpc_timeout), (60, 1800));
    assert_eq!((d.max_concurrent_snapshots, d.max_concurrent_builds), (5, 10));
    assert_eq!((d.report_interval, d.service_down_time), (10, 60));
    assert_eq!(d.non_inheritable_image_properties, ["cache_in_nova", "bittorrent"]);
    assert!(d.use_cow_images && !d.debug);
    assert!(!d.host.is_empty());
    assert_eq!(cfg.libvirt.connection_uri, "");
    assert_eq!(cfg.libvirt.effective_uri(), "qemu:///system");
    assert_eq!(cfg.libvirt.snapshot_image_format, None);
    assert_eq!(cfg.snapshot_engine.live_strategy, "backup");
    assert_eq!(cfg.libvirt.images_rbd_pool, "rbd");
    assert_eq!(cfg.glance.num_retries, 3);
    assert_eq!(cfg.glance.service_type, "image");
    let r = &cfg.oslo_messaging_rabbit;
    assert_eq!(r.rabbit_transient_queues_ttl, 1800);
    assert_eq!((r.rabbit_retry_interval, r.rabbit_retry_backoff, r.rabbit_interval_max), (1, 2, 30));
    assert_eq!(r.rabbit_login_method, oslo_config::groups::LoginMethod::AmqPlain);
    assert_eq!(r.hostname, d.host);
    assert_eq!(r.processname, "nova-compute");
    assert!(r.direct_mandatory_flag);
    assert_eq!(cfg.oslo_messaging_notifications.topics, ["notifications"]);
    assert!(cfg.oslo_messaging_notifications.driver.is_empty());
    assert_eq!(cfg.oslo_messaging_notifications.retry, -1);
    assert_eq!(cfg.notifications.versioned_notifications_topics, ["versioned_notifications"]);
    assert_eq!(cfg.compute.max_concurrent_disk_ops, 0);
}

#[test]
fn bools_accept_oslo_spellings_in_any_case() {
    for (text, want) in [("YES", true), ("On", true), ("1", true), ("no", false), ("OFF", false), ("0", false)] {
        let cfg = load(&format!("[workarounds]\ndisable_libvirt_livesnapshot = {text}\n")).unwrap();
        assert_eq!(cfg.workarounds.disable_libvirt_livesnapshot, want, "{text}");
    }
}

#[test]
fn invalid_bool_names_file_line_group_option() {
    assert_eq!(
        error("[DEFAULT]\n\n[workarounds]\ndisable_libvirt_livesnapshot = maybe\n"),
        "F:4: [workarounds] disable_libvirt_livesnapshot: invalid boolean \"maybe\""
    );
}

#[test]
fn invalid_integer_names_file_line_group_option() {
    assert_eq!(error("[DEFAULT]\nreport_interval = ten\n"), "F:2: [DEFAULT] report_interval: invalid integer \"ten\"");
}

#[test]
fn integer_minimum_enforced() {
    assert_eq!(
        error("[DEFAULT]\nmax_concurrent_snapshots = -1\n"),
        "F:2: [DEFAULT] max_concurrent_snapshots: -1 is less than the minimum 0"
    );
}

#[test]
fn choices_are_enforced_case_sensitively() {
    let cfg = load("[libvirt]\nsnapshot_image_format = qcow2\n").unwrap();
    assert_eq!(cfg.libvirt.snapshot_image_format.as_deref(), Some("qcow2"));
    assert_eq!(
        error("[libvirt]\nsnapshot_image_format = QCOW2\n"),
        "F:2: [libvirt] snapshot_image_format: invalid value \"QCOW2\", valid values are: raw, qcow2, vmdk, vdi"
    );
    assert!(error("[libvirt]\nlive_snapshot_strategy = blockcommit\n").contains("backup, mirror"));
}

#[test]
fn list_items_are_trimmed() {
    let cfg = load("[glance]\nvalid_interfaces =  admin , internal ,\n").unwrap();
    assert_eq!(cfg.glance.valid_interfaces, ["admin", "internal"]);
}

#[test]
fn empty_integer_is_unset() {
    let cfg = load("[glance]\ntimeout =\n").unwrap();
    assert_eq!(cfg.glance.timeout, None);
}

#[test]
fn invalid_secret_value_is_not_quoted_in_the_error() {
    let e = error("[service_user]\napplication_credential_secret = s3cr3t\n[glance]\nnum_retries = x\n");
    assert!(!e.contains("s3cr3t"));
    // A secret option with a type error never shows the value either.
    let e = error("[oslo_messaging_rabbit]\nssl_key_file = /k\nkombu_reconnect_delay = fast\n");
    assert_eq!(e, "F:3: [oslo_messaging_rabbit] kombu_reconnect_delay: invalid float \"fast\"");
}

#[test]
fn secrets_masked_in_debug_and_dump() {
    let cfg = load(
        "[DEFAULT]\ntransport_url = rabbit://u:hunter2@h:5672/\n\
         [service_user]\npassword = hunter3\napplication_credential_secret = hunter4\n\
         [oslo_messaging_notifications]\ntransport_url = rabbit://n:hunter5@h//\n\
         [oslo_messaging_rabbit]\nssl_key_file = /etc/hunter6.key\n",
    )
    .unwrap();
    let debug = format!("{cfg:?}");
    let dump = cfg.dump_json();
    for text in [&debug, &dump] {
        for s in ["hunter2", "hunter3", "hunter4", "hunter5", "hunter6"] {
            assert!(!text.contains(s), "{s} leaked in {text}");
        }
    }
    let json: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(json["DEFAULT"]["transport_url"], "rabbit://u:***@h:5672/");
    assert_eq!(json["service_user"]["application_credential_secret"], "***");
    assert_eq!(json["oslo_messaging_notifications"]["transport_url"], "rabbit://n:***@h//");
    assert_eq!(cfg.service_user.password.as_ref().unwrap().expose(), "hunter3");
}
