//! `$var` substitution as oslo does it.

mod common;

use common::{error, load};

#[test]
fn chain_from_defaults() {
    let cfg = load("[DEFAULT]\nstate_path = /srv/nova\n").unwrap();
    assert_eq!(cfg.default.instances_path, "/srv/nova/instances");
    assert_eq!(cfg.libvirt.snapshots_directory, "/srv/nova/instances/snapshots");
}

#[test]
fn chain_through_file_values() {
    let cfg = load("[DEFAULT]\nstate_path = /a\ninstances_path = ${state_path}/vms\n[libvirt]\nsnapshots_directory = $instances_path/snap\n").unwrap();
    assert_eq!(cfg.libvirt.snapshots_directory, "/a/vms/snap");
}

#[test]
fn group_qualified_reference() {
    let cfg =
        load("[libvirt]\nvirt_type = qemu\n[upgrade_levels]\ncompute = $libvirt.virt_type-${DEFAULT.state_path}\n")
            .unwrap();
    assert_eq!(cfg.upgrade_levels.compute.as_deref(), Some("qemu-/var/lib/nova"));
}

#[test]
fn same_group_is_searched_before_default() {
    let cfg = load("[glance]\nregion_name = RegionTwo\nendpoint_override = https://${region_name}.example\n").unwrap();
    assert_eq!(cfg.glance.endpoint_override.as_deref(), Some("https://RegionTwo.example"));
}

#[test]
fn dollar_dollar_and_backslash_dollar_are_literal_dollars() {
    let cfg = load("[service_user]\npassword = pa$$word\\$x\n").unwrap();
    assert_eq!(cfg.service_user.password.as_ref().unwrap().expose(), "pa$word$x");
}

#[test]
fn lone_dollar_is_kept() {
    let cfg = load("[upgrade_levels]\ncompute = cost $5 and $\n").unwrap();
    assert_eq!(cfg.upgrade_levels.compute.as_deref(), Some("cost $5 and $"));
}

#[test]
fn unset_reference_is_empty() {
    let cfg = load("[upgrade_levels]\ncompute = [$log_dir]\n").unwrap();
    assert_eq!(cfg.upgrade_levels.compute.as_deref(), Some("[]"));
}

#[test]
fn unknown_reference_is_a_clear_error() {
    assert_eq!(
        error("[DEFAULT]\n\ninstances_path = $nova_state/instances\n"),
        "F:3: [DEFAULT] instances_path: cannot substitute $nova_state: no such option"
    );
}

#[test]
fn unknown_group_reference_is_an_error() {
    assert!(error("[libvirt]\nsnapshots_directory = $placement.x/s\n").contains("$placement.x: no such option"));
}

#[test]
fn reference_cycle_is_an_error() {
    let e = error("[DEFAULT]\nstate_path = $instances_path\n");
    assert!(e.contains("cycle"), "{e}");
}

#[test]
fn references_in_unread_options_are_never_evaluated() {
    // Kolla writes `$my_ip` in [vnc]; we do not read [vnc] and must not fail.
    assert!(load("[vnc]\nserver_listen = $my_ip\n").is_ok());
}

#[test]
fn substituted_value_is_typed_after_substitution() {
    let cfg = load("[DEFAULT]\nreport_interval = $service_down_time\nservice_down_time = 42\n").unwrap();
    assert_eq!(cfg.default.report_interval, 42);
}

#[test]
fn dots_belong_to_the_name_unless_braced() {
    // oslo's idpattern includes '.', so `$region_name.example` means group
    // `region_name`, option `example`.
    let e = error("[glance]\nendpoint_override = https://$region_name.example\n");
    assert!(e.contains("$region_name.example: no such option"), "{e}");
}
