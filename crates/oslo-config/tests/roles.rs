//! Options tell the truth: every option has one role, ours are kept apart
//! from nova's names, and what a file sets without effect, or under a
//! deprecated spelling, is reported for the start-up log.

mod common;

use common::load;
use oslo_config::options::{Role, OPTIONS};
use oslo_config::ConfigWarning;

#[test]
fn extensions_live_only_in_their_own_group() {
    for spec in OPTIONS {
        assert_eq!(
            spec.role == Role::Extension,
            spec.group == "snapshot_engine",
            "[{}] {}: extensions and [snapshot_engine] must coincide",
            spec.group,
            spec.name
        );
    }
}

#[test]
fn the_live_strategy_moved_and_its_old_spelling_still_works_and_warns() {
    let cfg = load("[libvirt]\nlive_snapshot_strategy = mirror\n").unwrap();
    assert_eq!(cfg.snapshot_engine.live_strategy, "mirror");
    let warnings: Vec<String> = cfg.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].ends_with(
            ":2: option \"live_snapshot_strategy\" from group \"libvirt\" is deprecated; \
             use option \"live_strategy\" from group \"snapshot_engine\""
        ),
        "{}",
        warnings[0]
    );
    // The current name wins over the old one in the same file, as in oslo.
    let cfg = load("[snapshot_engine]\nlive_strategy = backup\n[libvirt]\nlive_snapshot_strategy = mirror\n").unwrap();
    assert_eq!(cfg.snapshot_engine.live_strategy, "backup");
}

#[test]
fn ignored_options_are_reported_once_when_set() {
    assert!(load("").unwrap().warnings().is_empty());
    let cfg = load(
        "[DEFAULT]\nmax_concurrent_builds = 4\nmax_concurrent_builds = 5\ndebug = true\n\
         [libvirt]\nimages_type = rbd\n[oslo_messaging_notifications]\ntransport_url = rabbit://u:secret@h//\n",
    )
    .unwrap();
    assert_eq!(
        cfg.ignored_options_set(),
        [
            ("DEFAULT", "max_concurrent_builds"),
            ("libvirt", "images_type"),
            ("oslo_messaging_notifications", "transport_url")
        ]
    );
    let text: Vec<String> = cfg.warnings().iter().map(ToString::to_string).collect();
    assert!(text[0].ends_with(":3: [DEFAULT] max_concurrent_builds is accepted for nova.conf compatibility but has no effect in this service"), "{}", text[0]);
    assert!(text.iter().all(|t| !t.contains("secret")), "{text:?}");
    assert!(matches!(cfg.warnings()[1], ConfigWarning::Ignored { group: "libvirt", name: "images_type", .. }));
}

#[test]
fn an_ignored_option_set_under_its_deprecated_name_gives_both_warnings() {
    let cfg = load("[DEFAULT]\nnotify_on_state_change = vm_state\n").unwrap();
    assert_eq!(cfg.ignored_options_set(), [("notifications", "notify_on_state_change")]);
    assert!(matches!(cfg.warnings()[0], ConfigWarning::DeprecatedName { old_group: "DEFAULT", .. }));
}

#[test]
fn the_options_operators_rely_on_are_novas() {
    let nova = [
        ("glance", "certfile"),
        ("glance", "keyfile"),
        ("service_user", "certfile"),
        ("service_user", "keyfile"),
        ("DEFAULT", "executor_thread_pool_size"),
        ("oslo_messaging_rabbit", "ssl_enforce_hostname_verification"),
    ];
    for (group, name) in nova {
        let spec = oslo_config::options::find(group, name).unwrap_or_else(|| panic!("[{group}] {name}"));
        assert_eq!(spec.role, Role::Nova, "[{group}] {name}");
    }
}

#[test]
fn executor_pool_and_cinder_have_novas_defaults() {
    let cfg = load("").unwrap();
    assert_eq!(cfg.default.executor_thread_pool_size, 64);
    let c = &cfg.cinder;
    assert_eq!(c.catalog_info, "volumev3::publicURL");
    assert_eq!((c.endpoint_template.as_deref(), c.os_region_name.as_deref()), (None, None));
    assert_eq!((c.cafile.as_deref(), c.certfile.as_deref(), c.keyfile.is_none()), (None, None, true));
    assert_eq!((c.insecure, c.timeout, c.http_retries), (false, None, 3));
    let cfg = load("[DEFAULT]\nrpc_thread_pool_size = 8\n[cinder]\nhttp_retries = 0\ninsecure = yes\n").unwrap();
    assert_eq!(cfg.default.executor_thread_pool_size, 8);
    assert_eq!((cfg.cinder.http_retries, cfg.cinder.insecure), (0, true));
}
