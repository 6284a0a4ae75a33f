//! Starting the machine: the secure-world process, then QEMU with the guest, every channel a
//! socket pair whose ends are handed down, so no path leads to the secure world, to QMP or to
//! the guest's control port.
//!
//! * The SMC port: one end of a stream pair is QEMU's chardev behind the guest's `optee.smc`
//!   virtio-serial port (`-chardev socket,fd=N`), the other is the secure world's conduit
//!   (`TEESYS_QEMU_CONDUIT_FD`). The launcher keeps neither.
//! * The secure world's control channel (statistics, machine reset): the launcher's, as init's
//!   is hosted; the guest has no way to it.
//! * QMP and the guest's `teesys.ctl` port: the launcher's ends, read on threads that feed one
//!   channel of [`Input`]s, so every wait of the scenario is one bounded `recv_timeout`.
//! * Guest RAM is a `memory-backend-file,share=on` on the secure world's RAM file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use tee_proto::secure::SecureStats;
use tee_rt::endpoint::Endpoint;
use tee_rt::secure_link::SecureLink;
use teesys_guest::ctl::{encode, GuestEvent, HostCommand};

/// QEMU virt's RAM base: host file offset = physical address − this.
pub const RAM_BASE: u64 = 0x4000_0000;

/// What the launcher is told, in order.
#[derive(Debug)]
pub enum Input {
    Guest(GuestEvent),
    /// A QMP event (`SHUTDOWN`, `RESET`, ...) with its data.
    Qmp {
        event: String,
        data: serde_json::Value,
    },
    /// A QMP command's answer.
    QmpReturn(serde_json::Value),
    /// A stream ended (`ctl` or `qmp`): QEMU is going or gone.
    Closed(&'static str),
    /// A background kexec load was reported (the scenario counts it, then says so here).
    Loaded,
}

/// How the machine is built.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    pub qemu: PathBuf,
    pub secure_world: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub run_dir: PathBuf,
    pub ram_file: PathBuf,
    /// Guest RAM in MiB. Past `mem=` lie the kernel's staging region (`image_mib`) and, at
    /// the top, the carve-out (`carveout_mib`).
    pub ram_mib: u64,
    pub carveout_mib: u64,
    /// Where QEMU puts the kernel Image for the guest's kexecs (not in the initramfs, whose
    /// unpacking under TCG costs ~35 ms per MiB on every boot).
    pub image_mib: u64,
    /// The Image's length in bytes.
    pub image_len: u64,
    pub crashkernel_mib: u64,
    pub smp: u32,
    /// Kernel parameters added at the end of the command line.
    pub extra_append: String,
}

impl MachineConfig {
    pub fn carveout_base(&self) -> u64 {
        RAM_BASE + ((self.ram_mib - self.carveout_mib) << 20)
    }

    /// The kernel's staging region: just below the carve-out.
    pub fn image_base(&self) -> u64 {
        self.carveout_base() - (self.image_mib << 20)
    }

    /// RAM the guest kernel manages (`mem=`).
    pub fn managed_mib(&self) -> u64 {
        self.ram_mib - self.carveout_mib - self.image_mib
    }

    /// QEMU's (and so every cold or reset boot's) kernel command line. `quiet` and
    /// `cryptomgr.notests` (no boot-time crypto self-tests, crypto/testmgr.c) take about a
    /// second off each boot under TCG; `retain_initrd` keeps the initramfs for the next kexec
    /// (/sys/firmware/initrd, init/initramfs.c).
    pub fn append(&self) -> String {
        format!(
            "console=ttyAMA0 quiet cryptomgr.notests panic=-1 mem={}M crashkernel={}M retain_initrd teesys.carveout={:#x},{:#x} teesys.image={:#x},{:#x} {}",
            self.managed_mib(),
            self.crashkernel_mib,
            self.carveout_base(),
            self.carveout_mib << 20,
            self.image_base(),
            self.image_len,
            self.extra_append
        )
        .trim_end()
        .to_owned()
    }
}

/// Why the machine could not be started or driven.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("the secure world does not answer: {0}")]
    SecureWorld(#[from] tee_rt::secure_link::LinkError),
    #[error("QMP: {0}")]
    Qmp(String),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> LaunchError {
    let what = what.into();
    move |source| LaunchError::Io { what, source }
}

pub struct Machine {
    pub config: MachineConfig,
    secure_world: Child,
    secure: SecureLink,
    qemu: Child,
    qmp: UnixStream,
    ctl: UnixStream,
    inputs: Receiver<Input>,
    /// Inputs that came while a QMP command waited for its answer, oldest first.
    pending: std::collections::VecDeque<Input>,
    /// When QEMU was started.
    pub started: Instant,
}

/// A descriptor a child inherits: a dup without close-on-exec, dropped once the child runs.
fn inheritable(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    nix::unistd::dup(fd).map_err(io::Error::from)
}

impl Machine {
    /// Starts the secure world and QEMU; the guest is booting when this returns.
    pub fn start(config: MachineConfig) -> Result<Machine, LaunchError> {
        std::fs::create_dir_all(&config.run_dir)
            .map_err(io_error(format!("create {}", config.run_dir.display())))?;
        for path in [
            &config.qemu,
            &config.secure_world,
            &config.kernel,
            &config.initrd,
        ] {
            if !path.exists() {
                return Err(LaunchError::Io {
                    what: format!("{} is missing", path.display()),
                    source: io::Error::from(io::ErrorKind::NotFound),
                });
            }
        }
        let _ = std::fs::remove_file(&config.ram_file);
        let (our_control, their_control) = Endpoint::pair().map_err(io_error("control pair"))?;
        let (qemu_smc, world_smc) = UnixStream::pair().map_err(io_error("SMC pair"))?;
        let (qmp, qemu_qmp) = UnixStream::pair().map_err(io_error("QMP pair"))?;
        let (ctl, qemu_ctl) = UnixStream::pair().map_err(io_error("control-port pair"))?;

        let secure_world = spawn_secure_world(&config, their_control, world_smc)?;
        let mut secure = SecureLink::new(our_control);
        // Answering proves it is up, and so that its RAM file exists at its full size.
        secure.stats()?;

        let qemu = spawn_qemu(&config, &qemu_smc, &qemu_qmp, &qemu_ctl)?;
        drop((qemu_smc, qemu_qmp, qemu_ctl));
        let started = Instant::now();

        let (tx, inputs) = channel();
        read_ctl(ctl.try_clone().map_err(io_error("ctl clone"))?, tx.clone());
        read_qmp(qmp.try_clone().map_err(io_error("qmp clone"))?, tx);
        let mut machine = Machine {
            config,
            secure_world,
            secure,
            qemu,
            qmp,
            ctl,
            inputs,
            pending: Default::default(),
            started,
        };
        machine.qmp_command("qmp_capabilities", Duration::from_secs(30))?;
        Ok(machine)
    }

    /// The next input, waiting at most `within`; `None` when none came.
    pub fn next(&mut self, within: Duration) -> Option<Input> {
        if let Some(input) = self.pending.pop_front() {
            return Some(input);
        }
        match self.inputs.recv_timeout(within) {
            Ok(input) => Some(input),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Input::Closed("all")),
        }
    }

    /// Sends a command to the guest's init.
    pub fn send(&mut self, command: &HostCommand) -> Result<(), LaunchError> {
        let line = encode(command).map_err(|e| LaunchError::Qmp(e.to_string()))?;
        self.ctl
            .write_all(line.as_bytes())
            .map_err(io_error("write to the guest's control port"))
    }

    /// Runs a QMP command and waits (bounded) for its answer; what comes meanwhile is kept for
    /// [`Machine::next`].
    pub fn qmp_command(&mut self, name: &str, within: Duration) -> Result<(), LaunchError> {
        self.qmp_execute(name, serde_json::Value::Null, within)
    }

    /// [`Machine::qmp_command`] with arguments.
    pub fn qmp_execute(
        &mut self,
        name: &str,
        arguments: serde_json::Value,
        within: Duration,
    ) -> Result<(), LaunchError> {
        let command = if arguments.is_null() {
            serde_json::json!({ "execute": name })
        } else {
            serde_json::json!({ "execute": name, "arguments": arguments })
        };
        let line = format!("{command}\n");
        self.qmp
            .write_all(line.as_bytes())
            .map_err(io_error(format!("QMP {name}")))?;
        let give_up = Instant::now() + within;
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.inputs.recv_timeout(left) {
                Ok(Input::QmpReturn(value)) => {
                    if value.get("error").is_some() {
                        return Err(LaunchError::Qmp(format!("{name}: {value}")));
                    }
                    return Ok(());
                }
                Ok(Input::Closed(what)) => {
                    return Err(LaunchError::Qmp(format!("{what} closed during {name}")))
                }
                Ok(other) => self.pending.push_back(other),
                Err(_) => return Err(LaunchError::Qmp(format!("no answer to {name} in time"))),
            }
        }
    }

    /// The secure world's figures now.
    pub fn stats(&mut self) -> Result<SecureStats, LaunchError> {
        Ok(self.secure.stats()?)
    }

    /// A machine reset of the secure world (the guest's reset is one).
    pub fn reset_secure_world(&mut self) -> Result<(), LaunchError> {
        Ok(self.secure.reset()?)
    }

    /// Ends QEMU (quit, then kill after a bound) and the secure world (its control channel
    /// closes with `self`).
    pub fn stop(mut self) {
        let _ = self.qmp_command("quit", Duration::from_secs(5));
        wait_or_kill(&mut self.qemu, Duration::from_secs(10), "qemu");
        let mut world = self.secure_world;
        drop(self.secure);
        wait_or_kill(&mut world, Duration::from_secs(10), "secure-world");
        let _ = std::fs::remove_file(&self.config.ram_file);
    }
}

fn wait_or_kill(child: &mut Child, within: Duration, what: &str) {
    let give_up = Instant::now() + within;
    while Instant::now() < give_up {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::warn!(what, "did not exit in time; killed");
    let _ = child.kill();
    let _ = child.wait();
}

fn log_file(run_dir: &Path, name: &str) -> Result<File, LaunchError> {
    let path = run_dir.join(name);
    File::create(&path).map_err(io_error(format!("create {}", path.display())))
}

fn spawn_secure_world(
    config: &MachineConfig,
    control: Endpoint,
    conduit: UnixStream,
) -> Result<Child, LaunchError> {
    let control_fd = inheritable(control.as_fd()).map_err(io_error("dup control"))?;
    let conduit_fd = inheritable(conduit.as_fd()).map_err(io_error("dup conduit"))?;
    let mut command = Command::new(&config.secure_world);
    command
        .arg("--ram")
        .arg(&config.ram_file)
        .arg("--ram-size")
        .arg((config.ram_mib << 20).to_string())
        .arg("--ftpm-state")
        .arg(config.run_dir.join("ftpm.nv"))
        .env(
            tee_rt::spawn::SECURE_CONTROL_FD_ENV,
            control_fd.as_raw_fd().to_string(),
        )
        .env("TEESYS_QEMU_CONDUIT_FD", conduit_fd.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file(&config.run_dir, "secure-world.log")?))
        .stderr(Stdio::from(log_file(&config.run_dir, "secure-world.log")?));
    let child = command
        .spawn()
        .map_err(io_error(format!("start {}", config.secure_world.display())))?;
    Ok(child)
}

fn spawn_qemu(
    config: &MachineConfig,
    smc: &UnixStream,
    qmp: &UnixStream,
    ctl: &UnixStream,
) -> Result<Child, LaunchError> {
    let smc = inheritable(smc.as_fd()).map_err(io_error("dup smc"))?;
    let qmp = inheritable(qmp.as_fd()).map_err(io_error("dup qmp"))?;
    let ctl = inheritable(ctl.as_fd()).map_err(io_error("dup ctl"))?;
    let args = qemu_args(config, smc.as_raw_fd(), qmp.as_raw_fd(), ctl.as_raw_fd());
    tracing::info!(args = %args.join(" "), "starting QEMU");
    let child = Command::new(&config.qemu)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file(&config.run_dir, "qemu.log")?))
        .stderr(Stdio::from(log_file(&config.run_dir, "qemu.log")?))
        .spawn()
        .map_err(io_error(format!("start {}", config.qemu.display())))?;
    Ok(child)
}

/// QEMU's command line (REFERENCE.md §6; the probe's flags).
pub fn qemu_args(config: &MachineConfig, smc: i32, qmp: i32, ctl: i32) -> Vec<String> {
    let ram = format!("{}M", config.ram_mib);
    let console = config.run_dir.join("console.log");
    [
        "-M",
        "virt",
        // cortex-a57: `max` emulates pointer authentication, ~4x slower to boot.
        "-cpu",
        "cortex-a57",
        // A small translation cache: with the default, every kexec'd boot runs 2.5-4x slower
        // (stale translated blocks of the previous kernel).
        "-accel",
        "tcg,tb-size=16",
        "-smp",
        &config.smp.to_string(),
        "-m",
        &ram,
        "-display",
        "none",
        "-monitor",
        "none",
        // No NIC: the default one would take the first virtio slot.
        "-nic",
        "none",
        "-serial",
        &format!("file:{}", console.display()),
        "-object",
        &format!(
            "memory-backend-file,id=mem,size={ram},mem-path={},share=on",
            config.ram_file.display()
        ),
        "-machine",
        "memory-backend=mem",
        "-device",
        "virtio-serial-pci",
        "-chardev",
        &format!("socket,id=smc,fd={smc}"),
        "-device",
        "virtserialport,chardev=smc,name=optee.smc",
        "-chardev",
        &format!("socket,id=ctl,fd={ctl}"),
        "-device",
        "virtserialport,chardev=ctl,name=teesys.ctl",
        "-chardev",
        &format!("socket,id=qmp,fd={qmp}"),
        "-mon",
        "chardev=qmp,mode=control",
        // A guest reset pauses the machine (a SHUTDOWN event) until the launcher has reset
        // the secure world; then system_reset and cont.
        "-action",
        "reboot=shutdown,shutdown=pause",
        // The Image again, raw, in the staging region past mem= (re-applied on every reset).
        "-device",
        &format!(
            "loader,file={},addr={:#x},force-raw=on",
            config.kernel.display(),
            config.image_base()
        ),
        "-kernel",
        &config.kernel.display().to_string(),
        "-initrd",
        &config.initrd.display().to_string(),
        "-append",
        &config.append(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn read_ctl(stream: UnixStream, tx: Sender<Input>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<GuestEvent>(&line) {
                Ok(event) => {
                    if tx.send(Input::Guest(event)).is_err() {
                        return;
                    }
                }
                Err(error) => tracing::warn!(%error, %line, "guest line not understood"),
            }
        }
        let _ = tx.send(Input::Closed("ctl"));
    });
}

fn read_qmp(stream: UnixStream, tx: Sender<Input>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let input = if let Some(event) = value.get("event").and_then(|e| e.as_str()) {
                Input::Qmp {
                    event: event.to_owned(),
                    data: value.get("data").cloned().unwrap_or_default(),
                }
            } else if value.get("return").is_some() || value.get("error").is_some() {
                Input::QmpReturn(value)
            } else {
                continue; // the greeting
            };
            if tx.send(input).is_err() {
                return;
            }
        }
        let _ = tx.send(Input::Closed("qmp"));
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config() -> MachineConfig {
        MachineConfig {
            qemu: "qemu-system-aarch64".into(),
            secure_world: "secure-world".into(),
            kernel: "Image".into(),
            initrd: "initrd.cpio".into(),
            run_dir: "run".into(),
            ram_file: "ram".into(),
            ram_mib: 2048,
            carveout_mib: 128,
            image_mib: 64,
            image_len: 44 << 20,
            crashkernel_mib: 512,
            smp: 1,
            extra_append: String::new(),
        }
    }

    #[test]
    fn the_carveout_is_the_top_of_ram_past_mem() {
        let config = config();
        assert_eq!(config.carveout_base(), 0xB800_0000);
        let append = config.append();
        let carve = teesys_guest::layout::carveout(&append).unwrap();
        assert_eq!(carve.base, 0xB800_0000);
        assert_eq!(carve.base + carve.len, RAM_BASE + (2048 << 20));
        assert!(append.contains("mem=1856M"));
        assert_eq!(config.image_base(), 0xB400_0000);
        assert!(append.contains("teesys.image=0xb4000000,0x2c00000"));
        assert!(append.contains("crashkernel=512M"));
        assert!(append.contains("retain_initrd"));
    }

    #[test]
    fn qemu_gets_the_probed_flags_and_only_socket_fds() {
        let list = qemu_args(&config(), 10, 11, 12);
        let args = list.join(" ");
        for flag in [
            "-cpu cortex-a57",
            "-accel tcg,tb-size=16",
            "-nic none",
            "share=on",
            "socket,id=smc,fd=10",
            "socket,id=qmp,fd=11",
            "socket,id=ctl,fd=12",
            "name=optee.smc",
            "name=teesys.ctl",
            "reboot=shutdown,shutdown=pause",
        ] {
            assert!(args.contains(flag), "{flag} missing from {args}");
        }
        // Every chardev is a handed-down descriptor, never a path another process could open.
        for chardev in list.iter().filter(|a| a.starts_with("socket,")) {
            assert!(!chardev.contains("path="), "socket path in {chardev}");
        }
    }
}
