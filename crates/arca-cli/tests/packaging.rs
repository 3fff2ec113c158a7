//! The Debian package (docs/packaging.md): `packaging/build-deb.sh` packages this test's own
//! binary, dpkg installs the package into a scratch root, and systemd-analyze checks the units
//! installed there. `arca generate`, which makes the package's man pages and completions, is
//! checked first on its own, with no tool but the binary.
//!
//! The package test needs dpkg, dpkg-deb, gzip, systemd-analyze and systemd-sysusers (`.ci/run`
//! installs them); without one it fails, unless `ARCA_TEST_ALLOW_MISSING_SERVICES=1` asks to skip
//! it (it then says so).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_arca");
const VERSION: &str = env!("CARGO_PKG_VERSION");
const UNITS: [&str; 3] = ["arca-server.service", "arca-appliance.service", "arca-agent.service"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Runs a command that must succeed; returns its standard output.
fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a `--help` text lists under "Commands:" (without clap's `help`).
fn listed_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// Every command and subcommand at any depth, as man page names (`arca`, `arca-admin-tenant`),
/// found the way a user would: through `--help`.
fn every_command(path: &[String], into: &mut BTreeSet<String>) {
    into.insert(format!("arca{}", path.iter().map(|p| format!("-{p}")).collect::<String>()));
    let help = ok(Command::new(BIN).args(path).arg("--help"));
    for sub in listed_commands(&help) {
        let mut deeper = path.to_vec();
        deeper.push(sub);
        every_command(&deeper, into);
    }
}

/// The decompressed text of a gzip file (through gzip(1), which every Debian system has).
fn gunzip(path: &Path) -> String {
    ok(Command::new("gzip").arg("-dc").arg(path))
}

#[test]
fn generate_writes_a_man_page_for_every_command_and_completions_for_each_shell() {
    let tmp = tempfile::tempdir().unwrap();
    let man = tmp.path().join("man/1");
    ok(Command::new(BIN).args(["generate", "man", "--quiet", "--out"]).arg(&man));

    let mut expected = BTreeSet::new();
    every_command(&[], &mut expected);
    for must in ["arca", "arca-backup", "arca-server", "arca-appliance", "arca-appliance-status", "arca-generate-man"] {
        assert!(expected.contains(must), "{must} is not a command any more? {expected:?}");
    }
    let written: BTreeSet<String> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .map(|name| name.strip_suffix(".1").unwrap_or_else(|| panic!("{name} is not a section-1 page")).to_string())
        .collect();
    assert_eq!(written, expected, "one page per command and subcommand, no more");

    let backup = std::fs::read_to_string(man.join("arca-backup.1")).unwrap();
    assert!(backup.starts_with(".ie") || backup.contains("\n.TH"), "not a roff page:\n{backup}");
    assert!(
        backup.contains(".TH arca-backup 1 ") && backup.contains(&format!("\"arca {VERSION}\"")),
        "title:\n{backup}"
    );
    assert!(backup.contains("exclude"), "the page lists the flags:\n{backup}");
    let top = std::fs::read_to_string(man.join("arca.1")).unwrap();
    assert!(top.contains("ARCA_REPOSITORY") && top.contains("arca\\-backup(1)"), "arca.1:\n{top}");

    let bash = ok(Command::new(BIN).args(["generate", "completions", "bash"]));
    assert!(bash.contains("complete -F _arca") && bash.contains("backup") && bash.contains("--exclude"));
    let zsh = ok(Command::new(BIN).args(["generate", "completions", "zsh"]));
    assert!(zsh.starts_with("#compdef arca") && zsh.contains("backup"));
    let fish = ok(Command::new(BIN).args(["generate", "completions", "fish"]));
    assert!(fish.contains("complete -c arca") && fish.contains("backup"));

    let bad = Command::new(BIN).args(["generate", "completions", "tcsh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values"), "{bad:?}");
}

/// Whether every tool of the package test is here; fails the test when one is missing, unless
/// missing services may be skipped (then it says so).
fn tools_available() -> bool {
    let missing: Vec<&str> = ["dpkg", "dpkg-deb", "gzip", "systemd-analyze", "systemd-sysusers"]
        .into_iter()
        .filter(|tool| {
            Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err()
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("ARCA_TEST_ALLOW_MISSING_SERVICES").as_deref() != Ok("1") {
        panic!(
            "the package test needs {missing:?}: apt-get install dpkg-dev systemd (or set \
             ARCA_TEST_ALLOW_MISSING_SERVICES=1 to skip)"
        );
    }
    eprintln!("SKIPPED: {missing:?} missing (apt-get install dpkg-dev systemd); the Debian package was not tested");
    false
}

#[test]
fn the_debian_package_installs_into_a_scratch_root_and_its_units_verify() {
    if !tools_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let arch = ok(Command::new("dpkg").arg("--print-architecture")).trim().to_string();

    // Built from this test's binary, into a directory of our choosing; the script prints its path.
    let out = tmp.path().join("out");
    let started = Instant::now();
    let printed = ok(Command::new("bash")
        .arg(repo_root().join("packaging/build-deb.sh"))
        .args(["--binary", BIN, "--out"])
        .arg(&out));
    eprintln!("packaged in {:.1?}", started.elapsed());
    let deb = PathBuf::from(printed.lines().last().unwrap());
    assert_eq!(deb, out.join(format!("arca_{VERSION}_{arch}.deb")));

    check_control(&deb, &arch);
    check_contents(&deb);

    let root = tmp.path().join("root");
    install(&deb, &root);
    check_installed_files(&root);
    check_server_config_starts_a_server(&root, tmp.path());
    check_appliance_example(&root);
    check_sysusers(&root);
    check_units(&root);
}

/// `dpkg-deb --info`: the control fields, and no maintainer scripts.
fn check_control(deb: &Path, arch: &str) {
    let field = |name: &str| ok(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name)).trim().to_string();
    assert_eq!(field("Package"), "arca");
    assert_eq!(field("Version"), VERSION);
    assert_eq!(field("Architecture"), arch);
    assert_eq!(field("Section"), "admin");
    assert!(field("Maintainer").contains('<'), "Maintainer needs an address");
    let depends = field("Depends");
    assert!(depends.starts_with("libc6") || depends.contains(" libc6"), "Depends: {depends}");
    let recommends = field("Recommends");
    assert!(recommends.contains("fuse3") && recommends.contains("samba"), "Recommends: {recommends}");
    assert!(field("Description").starts_with("encrypted, deduplicating backups"));
    assert!(field("Installed-Size").parse::<u64>().unwrap() > 0);

    let info = ok(Command::new("dpkg-deb").arg("--info").arg(deb));
    for script in ["preinst", "postinst", "prerm", "postrm", "config", "triggers"] {
        assert!(!info.contains(&format!(" {script} ")), "the package must have no maintainer scripts:\n{info}");
    }
    assert!(info.contains(" conffiles "), "{info}");
}

/// `dpkg-deb --contents`: every file owned by root, the expected paths present.
fn check_contents(deb: &Path) {
    let listing = ok(Command::new("dpkg-deb").arg("--contents").arg(deb));
    let mut paths = BTreeSet::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1], "root/root", "built with --root-owner-group: {line}");
        assert!(!fields[0][7..].contains('w'), "world-writable: {line}");
        paths.insert(fields[5].trim_start_matches('.').to_string());
    }
    for path in [
        "/usr/bin/arca",
        "/usr/lib/systemd/system/arca-server.service",
        "/usr/lib/systemd/system/arca-appliance.service",
        "/usr/lib/systemd/system/arca-agent.service",
        "/usr/lib/sysusers.d/arca.conf",
        "/etc/arca/server.toml",
        "/usr/share/man/man1/arca.1.gz",
        "/usr/share/man/man1/arca-backup.1.gz",
        "/usr/share/man/man1/arca-server.1.gz",
        "/usr/share/bash-completion/completions/arca",
        "/usr/share/zsh/vendor-completions/_arca",
        "/usr/share/fish/vendor_completions.d/arca.fish",
        "/usr/share/doc/arca/copyright",
        "/usr/share/doc/arca/packaging.md.gz",
        "/usr/share/doc/arca/examples/server.toml",
        "/usr/share/doc/arca/examples/appliance.toml",
    ] {
        assert!(paths.contains(path), "{path} is not in the package:\n{listing}");
    }
}

/// Installs the package into an empty root with its own dpkg database, as an unprivileged user
/// could: no chroot (the package has no scripts to run in one), and the root's missing libc6
/// package forgiven (the host's libc runs the binary).
fn install(deb: &Path, root: &Path) {
    let admin = root.join("var/lib/dpkg");
    std::fs::create_dir_all(admin.join("updates")).unwrap();
    std::fs::create_dir_all(admin.join("info")).unwrap();
    std::fs::write(admin.join("status"), "").unwrap();
    ok(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg(format!("--admindir={}", admin.display()))
        .args(["--force-not-root", "--force-script-chrootless", "--force-depends", "--log=/dev/null", "--install"])
        .arg(deb));
    let status = ok(Command::new("dpkg-query").arg(format!("--admindir={}", admin.display())).args([
        "--show",
        "--showformat=${Status} ${Version}",
        "arca",
    ]));
    assert_eq!(status, format!("install ok installed {VERSION}"));
}

fn check_installed_files(root: &Path) {
    let version = ok(Command::new(root.join("usr/bin/arca")).arg("--version"));
    assert_eq!(version.trim(), format!("arca {VERSION}"));

    let man = root.join("usr/share/man/man1");
    let pages: Vec<PathBuf> = std::fs::read_dir(&man).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(pages.len() > 30, "one page per command and subcommand: {pages:?}");
    for page in &pages {
        assert!(page.to_str().unwrap().ends_with(".1.gz"), "{}", page.display());
        let text = gunzip(page);
        assert!(text.contains("\n.TH ") || text.starts_with(".TH "), "{} has no .TH line", page.display());
    }
    let server = gunzip(&man.join("arca-server.1.gz"));
    assert!(server.contains("data\\-dir"), "arca-server(1) documents its flags:\n{server}");

    let bash = std::fs::read_to_string(root.join("usr/share/bash-completion/completions/arca")).unwrap();
    assert!(bash.contains("backup") && bash.contains("complete -F _arca"), "{bash}");
    let zsh = std::fs::read_to_string(root.join("usr/share/zsh/vendor-completions/_arca")).unwrap();
    assert!(zsh.starts_with("#compdef arca"));
    let fish = std::fs::read_to_string(root.join("usr/share/fish/vendor_completions.d/arca.fish")).unwrap();
    assert!(fish.contains("complete -c arca"));
    let copyright = std::fs::read_to_string(root.join("usr/share/doc/arca/copyright")).unwrap();
    assert!(copyright.contains("License: AGPL-3.0-or-later"));
    let conffiles = std::fs::read_to_string(root.join("var/lib/dpkg/info/arca.conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/arca/server.toml");
}

/// The installed /etc/arca/server.toml is what `systemctl enable --now arca-server` starts with:
/// the server must accept it (only the data directory is moved out of /var/lib).
fn check_server_config_starts_a_server(root: &Path, tmp: &Path) {
    let mut server = Command::new(root.join("usr/bin/arca"))
        .arg("server")
        .arg("--config")
        .arg(root.join("etc/arca/server.toml"))
        .arg("--data-dir")
        .arg(tmp.join("server-data"))
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("ARCA_ADMIN_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(server.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let listening = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("arca server listening on http://127.0.0.1:") => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    let _ = server.kill();
    let output = server.wait_with_output().unwrap();
    assert!(
        listening,
        "the server did not start on the packaged config:\n{}\n{}",
        seen.join("\n"),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The appliance example passes the appliance's own checks once a real password hash is put in.
fn check_appliance_example(root: &Path) {
    let hash = ok(Command::new(root.join("usr/bin/arca"))
        .args(["appliance", "hash-password"])
        .env("ARCA_NEW_PASSWORD", "a share user's password"));
    let example = std::fs::read_to_string(root.join("usr/share/doc/arca/examples/appliance.toml")).unwrap();
    let placeholder = "REPLACE with the output of arca appliance hash-password";
    assert!(example.contains(placeholder));
    let filled = example.replace(placeholder, hash.trim().trim_start_matches("password_hash = ").trim_matches('"'));
    if let Err(e) = arca_appliance::Config::parse(&filled) {
        panic!("the appliance example does not pass the appliance's checks: {e}\n{filled}");
    }
}

/// systemd-sysusers makes the server's user from the packaged file, in the scratch root.
fn check_sysusers(root: &Path) {
    ok(Command::new("systemd-sysusers").arg(format!("--root={}", root.display())));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let arca = passwd.lines().find(|l| l.starts_with("arca:")).unwrap_or_else(|| panic!("no arca user:\n{passwd}"));
    assert!(arca.ends_with(":/var/lib/arca:/usr/sbin/nologin"), "{arca}");
}

/// `systemd-analyze verify --root` on the installed units: unknown or misspelt settings, an
/// `ExecStart` binary missing from the root, bad dependencies. It reports many of these as
/// warnings and still exits 0, so any line it prints about our units fails the test. Its own man
/// page check runs `man` on the host, so the test checks `Documentation=man:` itself, against the
/// package's pages; and it runs each `ExecStart` with `--help` to prove the command and its
/// flags exist.
fn check_units(root: &Path) {
    // Every unit's default dependencies (sysinit.target, ...) come from the host's systemd, as
    // they would on a real system; the package's own files are never replaced. /lib too: a
    // Debian upgraded from before the /usr merge keeps its units there.
    let system = root.join("usr/lib/systemd/system");
    for host in ["/usr/lib/systemd/system", "/lib/systemd/system"] {
        for entry in std::fs::read_dir(host).into_iter().flatten() {
            let entry = entry.unwrap();
            let to = system.join(entry.file_name());
            if !to.exists() && entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to).unwrap();
            }
        }
    }
    // `arca agent` is being written beside this; until it is in the binary, its unit's command
    // line and man page cannot be checked.
    let has_agent = Command::new(BIN).args(["agent", "--help"]).output().unwrap().status.success();
    if !has_agent {
        eprintln!(
            "NOTE: this arca has no `agent` command yet: arca-agent.service's ExecStart and man page are not checked"
        );
    }

    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--generators=no"])
        .arg(format!("--root={}", root.display()))
        .args(UNITS)
        .output()
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let about_ours: Vec<&str> = printed.lines().filter(|l| l.contains("arca")).collect();
    assert!(
        out.status.success() && about_ours.is_empty(),
        "systemd-analyze verify ({}) on the packaged units:\n{printed}",
        out.status
    );
    if !printed.trim().is_empty() {
        eprintln!("systemd-analyze verify said, about the host's units:\n{printed}");
    }

    for unit in UNITS {
        let text = std::fs::read_to_string(system.join(unit)).unwrap();
        let setting = |key: &str| {
            text.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("{unit} has no {key}")).trim()
        };
        let agent = unit == "arca-agent.service";
        for must in ["Restart=on-failure", "PrivateTmp=yes", "NoNewPrivileges=yes", "ProtectSystem=", "ProtectHome="] {
            assert!(text.contains(must), "{unit} lacks {must}");
        }
        assert!(setting("StateDirectory=").starts_with("arca"), "{unit}");

        let doc = setting("Documentation=");
        let page = doc.strip_prefix("man:").and_then(|p| p.strip_suffix("(1)")).unwrap_or_else(|| panic!("{doc}"));
        if has_agent || !agent {
            let path = root.join(format!("usr/share/man/man1/{page}.1.gz"));
            assert!(path.exists(), "{unit}: Documentation={doc}, but the package has no {}", path.display());

            let exec = setting("ExecStart=");
            let args: Vec<&str> = exec.split_whitespace().collect();
            assert_eq!(args[0], "/usr/bin/arca", "{unit}");
            let help = Command::new(root.join("usr/bin/arca")).args(&args[1..]).arg("--help").output().unwrap();
            assert!(help.status.success(), "{unit}: {exec} is not a command line arca takes: {help:?}");
        }
    }
    let server = std::fs::read_to_string(system.join("arca-server.service")).unwrap();
    for must in ["ProtectSystem=strict", "ProtectHome=yes", "User=arca", "DynamicUser=yes"] {
        assert!(server.contains(must), "arca-server.service lacks {must}");
    }
}
