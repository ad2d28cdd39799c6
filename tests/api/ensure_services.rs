//! `scripts/ensure-services`, the README test command's first step, on a machine that lacks
//! packages: as root it installs them with apt-get, otherwise it names them and stops. Run
//! with stand-ins for the system tools (first on PATH) that report packages missing and
//! record what the script asks of apt-get, so nothing on the machine changes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/ensure-services");

fn stub(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fake machine on which msmtp, libpq-dev and chromium are not installed and everything else is;
/// `uid` is what `id -u` says. Returns (exit code, stderr, apt-get calls).
fn run_on_machine_missing_packages(uid: u32) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let apt_log = dir.path().join("apt-get.log");
    stub(
        &bin,
        "dpkg-query",
        r#"for last; do :; done
case "$last" in
  msmtp|libpq-dev|chromium) echo "unknown ok not-installed"; exit 1 ;;
  *) echo "install ok installed" ;;
esac"#,
    );
    stub(
        &bin,
        "apt-get",
        &format!("echo \"$*\" >> '{}'", apt_log.display()),
    );
    stub(&bin, "id", &format!("echo {uid}"));
    stub(&bin, "pg_isready", "exit 0");
    let venv = dir.path().join("venv");
    std::fs::create_dir_all(venv.join("bin")).unwrap();
    stub(&venv.join("bin"), "python", "exit 0");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new("bash")
        .arg(SCRIPT)
        .env("PATH", path)
        .env("AUTHD_VENV", &venv)
        .output()
        .expect("the script runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        std::fs::read_to_string(&apt_log).unwrap_or_default(),
    )
}

#[test]
fn ensure_services_as_root_installs_the_missing_packages_after_one_apt_get_update() {
    let (code, err, apt) = run_on_machine_missing_packages(0);
    let calls: Vec<&str> = apt.lines().collect();
    assert_eq!(
        calls,
        [
            "update -qq",
            "install -y -qq --no-install-recommends libpq-dev msmtp chromium"
        ],
        "stderr: {err}"
    );
    assert!(
        err.contains("installing missing packages: libpq-dev msmtp chromium"),
        "says what it does: {err}"
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn ensure_services_not_as_root_names_the_missing_packages_and_stops() {
    let (code, err, apt) = run_on_machine_missing_packages(1000);
    assert_eq!(code, 1, "{err}");
    assert_eq!(apt, "", "apt-get is not run without root");
    assert!(
        err.contains("missing packages: libpq-dev msmtp chromium: apt-get install libpq-dev msmtp chromium as root"),
        "{err}"
    );
}
