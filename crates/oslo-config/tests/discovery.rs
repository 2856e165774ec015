//! Which files are read, in which order: command line, dirs, default search.

mod common;

use common::Files;
use oslo_config::{Config, ConfigArgs, ConfigError, ConfigLocation, SearchRoots};

fn args(locations: Vec<ConfigLocation>, f: &Files) -> ConfigArgs {
    ConfigArgs {
        locations,
        search: SearchRoots { home: Some(f.path("home")), etc: f.path("etc") },
        ..ConfigArgs::default()
    }
}

#[test]
fn later_config_file_wins() {
    let f = Files::new();
    let a = f.write("a.conf", "[DEFAULT]\nreport_interval = 1\n");
    let b = f.write("b.conf", "[DEFAULT]\nreport_interval = 2\n");
    let (parsed, _) = ConfigArgs::parse([
        format!("--config-file={}", a.display()),
        "--config-file".to_owned(),
        b.display().to_string(),
    ])
    .unwrap();
    let cfg = Config::load(&args(parsed.locations, &f)).unwrap();
    assert_eq!(cfg.default.report_interval, 2);
}

#[test]
fn config_dir_reads_sorted_conf_files_after_the_file() {
    let f = Files::new();
    let main = f.write("nova.conf", "[DEFAULT]\nreport_interval = 1\nservice_down_time = 5\nlog_dir = /main\n");
    f.write("d/20-b.conf", "[DEFAULT]\nreport_interval = 3\n");
    f.write("d/10-a.conf", "[DEFAULT]\nreport_interval = 2\nservice_down_time = 6\n");
    f.write("d/30-ignored.txt", "[DEFAULT]\nreport_interval = 99\n");
    f.write("d/.hidden.conf", "[DEFAULT]\nreport_interval = 98\n");
    let cfg = Config::load(&args(vec![ConfigLocation::File(main), ConfigLocation::Dir(f.path("d"))], &f)).unwrap();
    assert_eq!(cfg.default.report_interval, 3);
    assert_eq!(cfg.default.service_down_time, 6);
    assert_eq!(cfg.default.log_dir.as_deref(), Some("/main"));
    let names: Vec<_> = cfg.files().iter().map(|p| p.file_name().unwrap().to_owned()).collect();
    assert_eq!(names, ["nova.conf", "10-a.conf", "20-b.conf"]);
}

#[test]
fn command_line_order_decides_as_in_oslo() {
    // oslo parses each --config-file/--config-dir as argparse meets it.
    let f = Files::new();
    f.write("d/a.conf", "[DEFAULT]\nreport_interval = 2\n");
    let main = f.write("nova.conf", "[DEFAULT]\nreport_interval = 1\n");
    let cfg = Config::load(&args(vec![ConfigLocation::Dir(f.path("d")), ConfigLocation::File(main)], &f)).unwrap();
    assert_eq!(cfg.default.report_interval, 1);
}

#[test]
fn missing_config_dir_is_an_error() {
    let f = Files::new();
    let e = Config::load(&args(vec![ConfigLocation::Dir(f.path("nope"))], &f)).unwrap_err();
    assert!(matches!(e, ConfigError::DirNotFound(_)), "{e}");
}

#[test]
fn default_search_first_match_per_name_in_order() {
    let f = Files::new();
    // nova.conf: ~/.nova/ beats /etc/nova/; nova-compute.conf only in /etc.
    f.write("home/.nova/nova.conf", "[DEFAULT]\nreport_interval = 1\nlog_dir = /home\n");
    f.write("etc/nova/nova.conf", "[DEFAULT]\nreport_interval = 2\nlog_file = etc.log\n");
    f.write("etc/nova-compute.conf", "[DEFAULT]\nservice_down_time = 77\n");
    let cfg = Config::load(&args(vec![], &f)).unwrap();
    assert_eq!(cfg.default.report_interval, 1);
    assert_eq!(cfg.default.log_file, None, "only the first nova.conf is read");
    assert_eq!(cfg.default.service_down_time, 77);
    assert_eq!(cfg.files().len(), 2);
}

#[test]
fn default_search_includes_conf_d_dirs_after_files() {
    let f = Files::new();
    f.write("etc/nova/nova.conf", "[DEFAULT]\nreport_interval = 1\n");
    f.write("home/nova.conf.d/50.conf", "[DEFAULT]\nreport_interval = 5\n");
    f.write("etc/nova/nova-compute.conf.d/x.conf", "[DEFAULT]\nservice_down_time = 9\n");
    let cfg = Config::load(&args(vec![], &f)).unwrap();
    assert_eq!(cfg.default.report_interval, 5);
    assert_eq!(cfg.default.service_down_time, 9);
}

#[test]
fn explicit_config_file_disables_default_files_but_not_default_dirs() {
    let f = Files::new();
    f.write("etc/nova/nova.conf", "[DEFAULT]\nreport_interval = 1\n");
    f.write("etc/nova/nova.conf.d/a.conf", "[DEFAULT]\nservice_down_time = 9\n");
    let main = f.write("x.conf", "[DEFAULT]\nlog_dir = /x\n");
    let cfg = Config::load(&args(vec![ConfigLocation::File(main)], &f)).unwrap();
    assert_eq!(cfg.default.report_interval, 10);
    assert_eq!(cfg.default.service_down_time, 9);
}

#[test]
fn nothing_found_gives_defaults() {
    let f = Files::new();
    let cfg = Config::load(&args(vec![], &f)).unwrap();
    assert!(cfg.files().is_empty());
    assert_eq!(cfg.default.state_path, "/var/lib/nova");
}
