//! `cargo xtask qemu` (and `./run-qemu.sh`): the service set under a real arm64 Linux kernel in
//! QEMU, with real kexec and kdump, the secure world on the host.
//!
//! On a fresh machine it installs what it needs (QEMU, cpio, the aarch64 cross compiler for
//! kexec-tools, the musl target), fetches Debian's current 6.12 arm64 kernel (resolved at run
//! time, the extracted Image cached under `target/qemu/kernel/`), builds a static kexec-tools
//! from Debian's source package (cached under `target/qemu/kexec-tools/`), cross-builds the
//! guest's root task and servers, packs the initramfs and runs `teesys-qemu`. Every external
//! step is bounded and names what failed.
//!
//! Debian's 6.12 arm64 kernel has VIRTIO_PCI and VIRTIO_CONSOLE built in (checked in its
//! config), so the initramfs needs no modules; its KEXEC_FILE is off, so the guest's
//! kexec_file_load gets ENOSYS and falls back on kexec-tools.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cross::{ensure_target, TARGET};
use crate::prereq::{ensure_debian_packages, privileged};
use crate::run::cargo;

/// Debian packages the QEMU path needs.
pub const DEBIAN_PACKAGES: &[&str] = &[
    "qemu-system-arm",
    "cpio",
    // kexec-tools is C: built statically for aarch64 from Debian's source package.
    "gcc-aarch64-linux-gnu",
    "libc6-dev-arm64-cross",
    "make",
    // dpkg-source unpacks the source package.
    "dpkg-dev",
];

/// The kernel metapackage whose current version is resolved at run time.
const KERNEL_META: &str = "linux-image-6.12-arm64:arm64";
/// Options the guest relies on, checked in the kernel's own config.
const KERNEL_NEEDS: &[&str] = &[
    "CONFIG_KEXEC=y",
    "CONFIG_CRASH_DUMP=y",
    "CONFIG_PROC_VMCORE=y",
    "CONFIG_VIRTIO_PCI=y",
    "CONFIG_VIRTIO_CONSOLE=y",
    "CONFIG_DEVMEM=y",
    "CONFIG_MAGIC_SYSRQ=y",
    "CONFIG_BLK_DEV_INITRD=y",
];
/// Where the apt sources for Debian's source packages are written, when none exist.
const DEB_SRC_LIST: &str = "/etc/apt/sources.list.d/teesys-deb-src.sources";

/// Bound on one cargo build (a cold cross build takes 2-3 minutes on 2 busy cores).
const BUILD_BOUND: Duration = Duration::from_secs(1800);

/// The guest's binaries, cross-built.
const GUEST_PACKAGES: &[&str] = &["teesys-guest", "teed", "tpmd", "bnxtd"];
/// The host's binaries (the secure world and the launcher).
const HOST_PACKAGES: &[&str] = &["secure-world-host", "teesys-qemu"];

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuArgs {
    /// Orderly kexecs before the kdump.
    pub kexecs: u32,
    /// Run the seed-bugs build too (after the default one) and expect its 4th kexec to fail.
    pub seed_bugs: bool,
    /// Run only the seed-bugs build.
    pub seed_only: bool,
}

impl Default for QemuArgs {
    fn default() -> Self {
        QemuArgs {
            kexecs: 3,
            seed_bugs: false,
            seed_only: false,
        }
    }
}

/// The file the launcher writes its timings to, in its run folder.
const TIMINGS_FILE: &str = "timings.json";

/// Runs the scenario; returns where the default build's run wrote its timings (none when only
/// the seed-bugs build ran).
pub fn run(root: &Path, args: &QemuArgs) -> Result<Option<PathBuf>, String> {
    let started = Instant::now();
    ensure_debian_packages(DEBIAN_PACKAGES)?;
    ensure_target(root)?;
    let dir = target_dir(root).join("qemu");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let kernel = fetch_kernel(&dir)?;
    let kexec = build_kexec_tools(&dir)?;
    println!("qemu: kernel {}", kernel.display());
    println!("qemu: kexec-tools {}", kexec.display());
    let mut build = cargo(root);
    build.args(["build"]);
    for package in HOST_PACKAGES {
        build.args(["-p", package]);
    }
    run_bounded(&mut build, BUILD_BOUND, "host build")?;
    let host_bin = target_dir(root).join("debug");
    let mut timings = None;
    let mut runs = Vec::new();
    if !args.seed_only {
        runs.push(false);
    }
    if args.seed_bugs || args.seed_only {
        runs.push(true);
    }
    for seed in runs {
        let initrd = guest_initramfs(root, &dir, &kexec, seed)?;
        let run_dir = dir.join("runs").join(format!(
            "{}{}",
            unix_seconds(),
            if seed { "-seed-bugs" } else { "" }
        ));
        let mut launcher = Command::new(host_bin.join("teesys-qemu"));
        launcher
            .current_dir(root)
            .arg("--kernel")
            .arg(&kernel)
            .arg("--initrd")
            .arg(&initrd)
            .arg("--secure-world")
            .arg(host_bin.join("secure-world"))
            .arg("--run-dir")
            .arg(&run_dir)
            .arg("--kexecs")
            .arg(args.kexecs.to_string());
        if seed {
            launcher.arg("--seed-bugs");
        }
        // The launcher bounds every wait itself; this is the last resort.
        let bound = Duration::from_secs(600 + 60 * u64::from(args.kexecs));
        run_bounded(&mut launcher, bound, "teesys-qemu")?;
        if !seed {
            timings = Some(run_dir.join(TIMINGS_FILE));
        }
    }
    println!(
        "qemu: done in {:.0} s (downloads and builds included)",
        started.elapsed().as_secs_f64()
    );
    Ok(timings)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs `command` with inherited output, killing it past `bound`.
fn run_bounded(command: &mut Command, bound: Duration, what: &str) -> Result<(), String> {
    let mut child = command
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let give_up = Instant::now() + bound;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{what} failed ({status})")),
            Ok(None) if Instant::now() >= give_up => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{what} took longer than {} s; killed",
                    bound.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

/// Runs `command` to completion within `bound`, its output captured; stdout on success.
fn output_bounded(command: &mut Command, bound: Duration, what: &str) -> Result<String, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let give_up = Instant::now() + bound;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    // Both pipes drain on threads, so a chatty child never blocks on a full pipe.
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = stdout {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        }
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = stderr {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        }
        text
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= give_up => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{what} took longer than {} s; killed",
                    bound.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("{what}: {e}")),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!("{what} failed ({status}):\n{}", tail.join("\n")))
    }
}

/// apt-get and friends, as root (through sudo otherwise), bounded.
fn apt(argv: &[&str], bound: Duration, dir: Option<&Path>) -> Result<String, String> {
    let mut command = privileged(argv)?;
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    output_bounded(&mut command, bound, &argv.join(" "))
}

/// Makes sure apt knows arm64 packages: `dpkg --add-architecture arm64`, then an update.
fn ensure_arm64_lists() -> Result<(), String> {
    let foreign = output_bounded(
        Command::new("dpkg").arg("--print-foreign-architectures"),
        Duration::from_secs(30),
        "dpkg --print-foreign-architectures",
    )?;
    let candidate = output_bounded(
        Command::new("apt-cache").args(["depends", KERNEL_META]),
        Duration::from_secs(60),
        "apt-cache depends",
    )
    .unwrap_or_default();
    if foreign.lines().any(|l| l.trim() == "arm64") && kernel_package(&candidate).is_some() {
        return Ok(());
    }
    println!("qemu: adding the arm64 architecture to apt");
    apt(
        &["dpkg", "--add-architecture", "arm64"],
        Duration::from_secs(60),
        None,
    )?;
    apt(&["apt-get", "update"], Duration::from_secs(300), None)?;
    Ok(())
}

/// The concrete kernel package the metapackage depends on, from `apt-cache depends`.
fn kernel_package(depends: &str) -> Option<String> {
    depends.lines().find_map(|line| {
        let name = line.trim().strip_prefix("Depends:")?.trim();
        let name = name.strip_prefix('<').unwrap_or(name);
        name.starts_with("linux-image-6.12")
            .then(|| name.trim_end_matches('>').to_string())
    })
}

/// Debian's current 6.12 arm64 kernel: the extracted Image, cached per package name.
fn fetch_kernel(dir: &Path) -> Result<PathBuf, String> {
    ensure_arm64_lists()?;
    let depends = output_bounded(
        Command::new("apt-cache").args(["depends", KERNEL_META]),
        Duration::from_secs(60),
        "apt-cache depends",
    )?;
    let package = kernel_package(&depends).ok_or_else(|| {
        format!("{KERNEL_META} names no kernel package (apt-cache depends said: {depends})")
    })?;
    let name = package.trim_end_matches(":arm64");
    let cache = dir.join("kernel").join(name);
    let image = cache.join("Image");
    if image.is_file() {
        return Ok(image);
    }
    println!("qemu: fetching {package}");
    let downloads = dir.join("downloads");
    std::fs::create_dir_all(&downloads).map_err(|e| format!("{}: {e}", downloads.display()))?;
    apt(
        &["apt-get", "download", &package],
        Duration::from_secs(600),
        Some(&downloads),
    )?;
    let deb = find_file(&downloads, |file| {
        file.starts_with(&format!("{name}_")) && file.ends_with(".deb")
    })?;
    let extract = cache.join("extract");
    let _ = std::fs::remove_dir_all(&extract);
    std::fs::create_dir_all(&extract).map_err(|e| format!("{}: {e}", extract.display()))?;
    // Only ./boot: the Image and its config (the modules are not needed, see the module docs).
    let script = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' ./boot",
        deb.display(),
        extract.display()
    );
    output_bounded(
        Command::new("sh").args(["-c", &script]),
        Duration::from_secs(300),
        "extract the kernel",
    )?;
    let boot = extract.join("boot");
    let vmlinuz = find_file(&boot, |f| f.starts_with("vmlinuz-"))?;
    let config = find_file(&boot, |f| f.starts_with("config-"))?;
    let config_text =
        std::fs::read_to_string(&config).map_err(|e| format!("{}: {e}", config.display()))?;
    let missing = missing_options(&config_text);
    if !missing.is_empty() {
        return Err(format!("{package} lacks {}", missing.join(", ")));
    }
    std::fs::copy(&config, cache.join("config")).map_err(|e| format!("copy config: {e}"))?;
    std::fs::copy(&vmlinuz, &image).map_err(|e| format!("copy Image: {e}"))?;
    let _ = std::fs::remove_dir_all(&extract);
    let _ = std::fs::remove_file(&deb);
    Ok(image)
}

/// The options of [`KERNEL_NEEDS`] a kernel config lacks.
fn missing_options(config: &str) -> Vec<&'static str> {
    KERNEL_NEEDS
        .iter()
        .copied()
        .filter(|option| !config.lines().any(|line| line.trim() == *option))
        .collect()
}

fn find_file(dir: &Path, wanted: impl Fn(&str) -> bool) -> Result<PathBuf, String> {
    std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(&wanted)
        })
        .ok_or_else(|| format!("nothing expected found in {}", dir.display()))
}

/// `deb-src` stanzas mirroring every `deb` source apt has (deb822 `.sources` or one-line
/// `.list` text), so `apt-get source` works without naming any mirror here.
fn deb_src_stanzas(sources: &[String]) -> String {
    let mut out = String::from("# Written by `cargo xtask qemu`: Debian source packages\n");
    for text in sources {
        for stanza in text.split("\n\n") {
            let is_deb = stanza.lines().any(|l| {
                l.trim_start().starts_with("Types:") && l.split_whitespace().any(|w| w == "deb")
            });
            if is_deb && stanza.contains("URIs:") {
                let converted: Vec<String> = stanza
                    .lines()
                    .map(|line| {
                        if line.trim_start().starts_with("Types:") {
                            "Types: deb-src".to_string()
                        } else {
                            line.to_string()
                        }
                    })
                    .collect();
                out.push('\n');
                out.push_str(converted.join("\n").trim());
                out.push('\n');
            }
        }
        for line in text.lines() {
            if let Some(rest) = line.trim().strip_prefix("deb ") {
                out.push_str(&format!(
                    "\n# one-line source\nTypes: deb-src\n{}\n",
                    one_line_to_deb822(rest)
                ));
            }
        }
    }
    out
}

/// `[opts] URI suite components...` → deb822 fields.
fn one_line_to_deb822(rest: &str) -> String {
    let mut words: Vec<&str> = rest.split_whitespace().collect();
    let mut signed_by = None;
    if words.first().is_some_and(|w| w.starts_with('[')) {
        let mut options = Vec::new();
        while let Some(word) = words.first().copied() {
            words.remove(0);
            options.push(word);
            if word.ends_with(']') {
                break;
            }
        }
        signed_by = options
            .iter()
            .find_map(|o| o.trim_matches(['[', ']']).strip_prefix("signed-by="));
    }
    let uri = words.first().copied().unwrap_or_default();
    let suite = words.get(1).copied().unwrap_or_default();
    let components = words.get(2..).map(|c| c.join(" ")).unwrap_or_default();
    let mut text = format!("URIs: {uri}\nSuites: {suite}\nComponents: {components}");
    if let Some(key) = signed_by {
        text.push_str(&format!("\nSigned-By: {key}"));
    }
    text
}

/// Makes sure apt can fetch Debian source packages.
fn ensure_deb_src() -> Result<(), String> {
    let known = output_bounded(
        Command::new("apt-cache").args(["showsrc", "kexec-tools"]),
        Duration::from_secs(60),
        "apt-cache showsrc",
    )
    .unwrap_or_default();
    if known.contains("Version:") {
        return Ok(());
    }
    let mut sources = Vec::new();
    for path in ["/etc/apt/sources.list"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            sources.push(text);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.to_string_lossy().to_string();
            if (name.ends_with(".sources") || name.ends_with(".list"))
                && !name.ends_with(DEB_SRC_LIST)
            {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    sources.push(text);
                }
            }
        }
    }
    let stanzas = deb_src_stanzas(&sources);
    println!("qemu: adding deb-src entries for apt ({DEB_SRC_LIST})");
    let mut tee = privileged(&["tee", DEB_SRC_LIST])?;
    let mut child = tee
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("write {DEB_SRC_LIST}: {e}"))?;
    if let Some(stdin) = child.stdin.as_mut() {
        stdin
            .write_all(stanzas.as_bytes())
            .map_err(|e| format!("write {DEB_SRC_LIST}: {e}"))?;
    }
    let status = child
        .wait()
        .map_err(|e| format!("write {DEB_SRC_LIST}: {e}"))?;
    if !status.success() {
        return Err(format!("write {DEB_SRC_LIST}: {status}"));
    }
    apt(&["apt-get", "update"], Duration::from_secs(300), None)?;
    Ok(())
}

/// The source version apt would fetch, from `apt-cache showsrc`.
fn source_version(showsrc: &str) -> Option<String> {
    showsrc
        .lines()
        .find_map(|l| l.strip_prefix("Version:").map(|v| v.trim().to_string()))
}

/// A static aarch64 kexec-tools from Debian's source package, cached per version.
fn build_kexec_tools(dir: &Path) -> Result<PathBuf, String> {
    ensure_deb_src()?;
    let showsrc = output_bounded(
        Command::new("apt-cache").args(["showsrc", "kexec-tools"]),
        Duration::from_secs(60),
        "apt-cache showsrc kexec-tools",
    )?;
    let version =
        source_version(&showsrc).ok_or("apt-cache showsrc kexec-tools gave no version")?;
    let cache = dir.join("kexec-tools").join(&version);
    let binary = cache.join("kexec");
    if binary.is_file() {
        return Ok(binary);
    }
    println!("qemu: building kexec-tools {version} (static, aarch64)");
    let work = cache.join("build");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    apt(
        &[
            "apt-get",
            "source",
            "--download-only",
            &format!("kexec-tools={version}"),
        ],
        Duration::from_secs(300),
        Some(&work),
    )?;
    let dsc = find_file(&work, |f| f.ends_with(".dsc"))?;
    output_bounded(
        Command::new("dpkg-source")
            .current_dir(&work)
            .args(["-x", "--no-check"])
            .arg(&dsc)
            .arg("src"),
        Duration::from_secs(120),
        "dpkg-source -x kexec-tools",
    )?;
    let src = work.join("src");
    output_bounded(
        Command::new("./configure").current_dir(&src).args([
            "--host=aarch64-linux-gnu",
            "--without-xen",
            "--without-lzma",
            "--without-zlib",
            "LDFLAGS=-static",
        ]),
        Duration::from_secs(300),
        "configure kexec-tools",
    )?;
    output_bounded(
        Command::new("make").current_dir(&src).arg("-j2"),
        Duration::from_secs(600),
        "make kexec-tools",
    )?;
    let built = src.join("build").join("sbin").join("kexec");
    output_bounded(
        Command::new("aarch64-linux-gnu-strip").arg(&built),
        Duration::from_secs(60),
        "strip kexec",
    )?;
    std::fs::copy(&built, &binary).map_err(|e| format!("copy kexec: {e}"))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(binary)
}

/// Cross-builds the guest's binaries (with the seed's switches when `seed`) and packs them
/// with kexec-tools into a newc initramfs.
fn guest_initramfs(root: &Path, dir: &Path, kexec: &Path, seed: bool) -> Result<PathBuf, String> {
    let mut build = cargo(root);
    build.args(["build", "--release", "--target", TARGET]);
    for package in GUEST_PACKAGES {
        build.args(["-p", package]);
    }
    if seed {
        build.args(["--features", "teed/seed-bugs,bnxtd/seed-bugs"]);
    }
    run_bounded(&mut build, BUILD_BOUND, "guest cross build")?;
    let built = target_dir(root).join(TARGET).join("release");
    let name = if seed {
        "initramfs-seed-bugs"
    } else {
        "initramfs"
    };
    let stage = dir.join(name);
    let _ = std::fs::remove_dir_all(&stage);
    // No kernel Image inside: the launcher stages it past mem= (smaller initramfs, faster boots).
    for sub in ["bin", "sbin", "proc", "sys", "dev", "run", "tmp"] {
        std::fs::create_dir_all(stage.join(sub)).map_err(|e| format!("stage: {e}"))?;
    }
    let copy = |from: PathBuf, to: PathBuf| {
        std::fs::copy(&from, &to)
            .map(drop)
            .map_err(|e| format!("stage {}: {e}", from.display()))
    };
    copy(built.join("teesys-guest-init"), stage.join("init"))?;
    for server in ["teed", "tpmd", "bnxtd"] {
        copy(built.join(server), stage.join("bin").join(server))?;
    }
    copy(kexec.to_path_buf(), stage.join("sbin").join("kexec"))?;
    let cpio = dir.join(format!("{name}.cpio"));
    let list = file_list(&stage)?;
    let out = std::fs::File::create(&cpio).map_err(|e| format!("{}: {e}", cpio.display()))?;
    let mut pack = Command::new("cpio")
        .current_dir(&stage)
        .args(["-o", "-H", "newc", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(out)
        .spawn()
        .map_err(|e| format!("cpio: {e}"))?;
    if let Some(stdin) = pack.stdin.as_mut() {
        stdin
            .write_all(list.join("\n").as_bytes())
            .map_err(|e| format!("cpio: {e}"))?;
    }
    drop(pack.stdin.take());
    let status = pack.wait().map_err(|e| format!("cpio: {e}"))?;
    if !status.success() {
        return Err(format!("cpio failed ({status})"));
    }
    Ok(cpio)
}

/// Every path below `stage`, relative and sorted (directories before their contents).
fn file_list(stage: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::from(".")];
    while let Some(rel) = pending.pop() {
        out.push(rel.to_string_lossy().to_string());
        let full = stage.join(&rel);
        if full.is_dir() {
            let entries =
                std::fs::read_dir(&full).map_err(|e| format!("{}: {e}", full.display()))?;
            for entry in entries.flatten() {
                pending.push(rel.join(entry.file_name()));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_package_is_read_from_the_metapackage() {
        let depends =
            "linux-image-6.12-arm64:arm64\n  Depends: linux-image-6.12.118+deb12-arm64:arm64\n";
        assert_eq!(
            kernel_package(depends).unwrap(),
            "linux-image-6.12.118+deb12-arm64:arm64"
        );
        assert_eq!(kernel_package("linux-image-6.12-arm64:arm64\n"), None);
    }

    #[test]
    fn a_kernel_without_what_the_guest_needs_is_named() {
        let full: String = KERNEL_NEEDS.iter().map(|o| format!("{o}\n")).collect();
        assert!(missing_options(&full).is_empty());
        let without = full.replace("CONFIG_VIRTIO_CONSOLE=y", "CONFIG_VIRTIO_CONSOLE=m");
        assert_eq!(missing_options(&without), ["CONFIG_VIRTIO_CONSOLE=y"]);
    }

    #[test]
    fn deb_src_mirrors_every_deb_source_without_naming_one_here() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\nSigned-By: /k.gpg\n\nTypes: deb\nURIs: http://mirror.example/security\nSuites: bookworm-security\nComponents: main\n".to_string();
        let one_line =
            "deb [signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib\n# deb-src x\n"
                .to_string();
        let text = deb_src_stanzas(&[deb822, one_line]);
        assert_eq!(text.matches("Types: deb-src").count(), 3, "{text}");
        assert!(!text.contains("Types: deb\n"), "{text}");
        assert!(text.contains("Suites: bookworm-security"));
        assert!(text.contains("Components: main contrib"));
        assert!(text.contains("Signed-By: /k.gpg"));
    }

    #[test]
    fn the_source_version_is_read_from_showsrc() {
        let showsrc = "Package: kexec-tools\nBinary: kexec-tools\nVersion: 2.0.25-3+deb12u3\n";
        assert_eq!(source_version(showsrc).unwrap(), "2.0.25-3+deb12u3");
        assert_eq!(source_version("Package: x\n"), None);
    }

    #[test]
    fn the_initramfs_lists_directories_before_their_files() {
        let stage = std::env::temp_dir().join(format!("xtask-stage-{}", std::process::id()));
        std::fs::create_dir_all(stage.join("bin")).unwrap();
        std::fs::write(stage.join("init"), b"").unwrap();
        std::fs::write(stage.join("bin").join("teed"), b"").unwrap();
        let list = file_list(&stage).unwrap();
        assert_eq!(list, [".", "./bin", "./bin/teed", "./init"]);
        std::fs::remove_dir_all(&stage).unwrap();
    }
}
