//! oslo INI dialect, one behaviour per test, through the public API.

mod common;

use common::{error, load, Files};
use oslo_config::Config;

#[test]
fn double_and_single_quotes_are_stripped_once() {
    let cfg = load("[DEFAULT]\nlog_dir = \"/var/log/a b\"\nlog_file = ''nova.log''\n").unwrap();
    assert_eq!(cfg.default.log_dir.as_deref(), Some("/var/log/a b"));
    assert_eq!(cfg.default.log_file.as_deref(), Some("'nova.log'"));
}

#[test]
fn unmatched_quotes_are_kept() {
    let cfg = load("[DEFAULT]\nlog_dir = \"/var/log'\n").unwrap();
    assert_eq!(cfg.default.log_dir.as_deref(), Some("\"/var/log'"));
}

#[test]
fn continuation_lines_join_with_newline() {
    let cfg = load("[upgrade_levels]\ncompute = a\n    b\n\tc\n").unwrap();
    assert_eq!(cfg.upgrade_levels.compute.as_deref(), Some("a\nb\nc"));
}

#[test]
fn continued_list_value_splits_on_commas_only() {
    let cfg = load("[glance]\napi_servers = http://a:9292,\n  http://b:9292\n").unwrap();
    assert_eq!(cfg.glance.api_servers, ["http://a:9292", "http://b:9292"]);
}

#[test]
fn inline_hash_and_semicolon_are_part_of_the_value() {
    let cfg = load("[DEFAULT]\nlog_dir = /var/log # not a comment ; really\n# comment = x\n; log_file = y\n").unwrap();
    assert_eq!(cfg.default.log_dir.as_deref(), Some("/var/log # not a comment ; really"));
    assert_eq!(cfg.default.log_file, None);
}

#[test]
fn backslashes_are_literal() {
    let cfg = load("[DEFAULT]\nlog_dir = C:\\x\\new\\t\n").unwrap();
    assert_eq!(cfg.default.log_dir.as_deref(), Some("C:\\x\\new\\t"));
}

#[test]
fn colon_separator_and_first_separator_wins() {
    let cfg = load("[DEFAULT]\nlog_dir: /a=b\nlog_file = c:d\n").unwrap();
    assert_eq!(cfg.default.log_dir.as_deref(), Some("/a=b"));
    assert_eq!(cfg.default.log_file.as_deref(), Some("c:d"));
}

#[test]
fn repeated_sections_in_one_file_merge() {
    let cfg = load("[libvirt]\nvirt_type = qemu\n[DEFAULT]\ndebug = true\n[libvirt]\nrbd_user = nova\n").unwrap();
    assert_eq!(cfg.libvirt.virt_type, oslo_config::groups::VirtType::Qemu);
    assert_eq!(cfg.libvirt.rbd_user.as_deref(), Some("nova"));
}

#[test]
fn repeated_key_last_wins_for_normal_options() {
    let cfg = load("[DEFAULT]\nreport_interval = 5\nreport_interval = 7\n").unwrap();
    assert_eq!(cfg.default.report_interval, 7);
}

#[test]
fn multi_valued_option_keeps_all_values_in_one_file() {
    let cfg = load("[oslo_messaging_notifications]\ndriver = messagingv2\ndriver = log\n").unwrap();
    assert_eq!(cfg.oslo_messaging_notifications.driver, ["messagingv2", "log"]);
}

#[test]
fn multi_valued_option_accumulates_across_files() {
    let f = Files::new();
    let a = f.write("a.conf", "[oslo_messaging_notifications]\ndriver = messagingv2\n");
    let b = f.write("b.conf", "[oslo_messaging_notifications]\ndriver = log\ndriver = noop\n");
    let cfg = Config::from_files([a, b]).unwrap();
    assert_eq!(cfg.oslo_messaging_notifications.driver, ["messagingv2", "log", "noop"]);
}

#[test]
fn sections_repeat_across_files_later_file_wins() {
    let f = Files::new();
    let a = f.write("a.conf", "[DEFAULT]\nreport_interval = 5\nservice_down_time = 90\n");
    let b = f.write("b.conf", "[DEFAULT]\nreport_interval = 6\n");
    let cfg = Config::from_files([a, b]).unwrap();
    assert_eq!((cfg.default.report_interval, cfg.default.service_down_time), (6, 90));
}

#[test]
fn group_names_are_case_insensitive_except_default() {
    let cfg = load("[LibVirt]\nvirt_type = qemu\n[default]\ndebug = true\n[Default]\nuse_stderr = true\n").unwrap();
    assert_eq!(cfg.libvirt.virt_type, oslo_config::groups::VirtType::Qemu);
    // oslo only matches `DEFAULT` exactly; `[default]` is a different group.
    assert!(!cfg.default.debug);
    assert!(!cfg.default.use_stderr);
}

#[test]
fn option_names_are_case_sensitive() {
    let cfg = load("[DEFAULT]\nDebug = true\n").unwrap();
    assert!(!cfg.default.debug);
}

/// oslo looks options up in files by their `dest` (underscores) only, so a
/// dashed spelling in a file is just an unknown option.
#[test]
fn dashed_option_names_in_files_are_not_the_underscored_option() {
    let cfg = load("[oslo_messaging_rabbit]\nrabbit-quorum-queue = true\n").unwrap();
    assert!(!cfg.oslo_messaging_rabbit.rabbit_quorum_queue);
    let cfg = load("[oslo_messaging_rabbit]\nrabbit_quorum_queue = true\n").unwrap();
    assert!(cfg.oslo_messaging_rabbit.rabbit_quorum_queue);
}

#[test]
fn deprecated_names_are_read_and_current_name_wins_in_same_file() {
    let cfg = load("[DEFAULT]\nnotification_format = versioned\n").unwrap();
    assert_eq!(cfg.notifications.notification_format, oslo_config::groups::NotificationFormat::Versioned);
    let cfg =
        load("[notifications]\nnotification_format = both\n[DEFAULT]\nnotification_format = versioned\n").unwrap();
    assert_eq!(cfg.notifications.notification_format, oslo_config::groups::NotificationFormat::Both);
}

#[test]
fn unknown_groups_and_options_are_ignored() {
    let cfg = load(
        "[neutron]\nauth_type = password\n[DEFAULT]\ncompute_driver = libvirt.LibvirtDriver\nfoo = $nonexistent\n",
    )
    .unwrap();
    assert_eq!(cfg.default.report_interval, 10);
}

#[test]
fn syntax_error_names_file_and_line() {
    assert_eq!(
        error("[DEFAULT]\ndebug = true\nbroken line\n"),
        "F:3: no ':' or '=' found in assignment: \"broken line\""
    );
}

#[test]
fn missing_file_is_an_error() {
    let e = Config::from_files(["/nonexistent/nova.conf"]).unwrap_err();
    assert_eq!(e.to_string(), "config file not found: /nonexistent/nova.conf");
}
