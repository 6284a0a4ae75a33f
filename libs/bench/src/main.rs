//! `teesys-bench`: every figure of the performance budget, each against a baseline measured in
//! the same run, written to BENCHMARKS.md and benchmarks.json. `cargo xtask bench` builds it
//! in release and runs it; `--quick` runs tiny iteration counts to keep the code working.

mod hops;
mod hosted;
mod pingpong;
mod qemu;
mod scale;
mod stats;
mod table;
mod tpm;

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use stats::Samples;
use table::{num, Figure, Goal, Run};

/// Runs the bench and writes its report.
#[derive(Debug, Parser)]
#[command(name = "teesys-bench")]
struct Args {
    /// Tiny iteration counts: checks that every measurement runs, measures nothing.
    #[arg(long)]
    quick: bool,
    /// Where BENCHMARKS.md and benchmarks.json go.
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
    /// Kexec cycles of the hosted stack (RSS is compared before and after them).
    #[arg(long)]
    kexecs: Option<usize>,
    /// Only the sections whose names contain this (hops, hosted stack, registration scale,
    /// simulator): for working on one figure.
    #[arg(long)]
    only: Option<String>,
    /// The timings.json of a `cargo xtask qemu` run, for the QEMU guest's kexec figure.
    #[arg(long, conflicts_with = "qemu_missing")]
    qemu_timings: Option<PathBuf>,
    /// Why there is no QEMU run to read (the figure says so).
    #[arg(long)]
    qemu_missing: Option<String>,
    /// Leave the processes wherever the scheduler puts them (by default every process of the
    /// run is pinned to one CPU, so that placement does not move the hop figures).
    #[arg(long)]
    all_cpus: bool,
}

/// Pins this process, and so every process it starts, to the first CPU it may run on (a
/// container's CPU set need not hold CPU 0); returns that CPU.
fn pin_to_first_cpu() -> Result<usize, String> {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let allowed = sched_getaffinity(Pid::from_raw(0)).map_err(|e| format!("CPU set: {e}"))?;
    let cpu = (0..CpuSet::count())
        .find(|&cpu| allowed.is_set(cpu).unwrap_or(false))
        .ok_or("no CPU in this process's CPU set")?;
    let mut set = CpuSet::new();
    set.set(cpu).map_err(|e| format!("CPU set: {e}"))?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| format!("pinning to CPU {cpu}: {e}"))?;
    Ok(cpu)
}

/// Iteration counts of one run.
struct Plan {
    quick: bool,
    rounds: usize,
    per_round: usize,
    coredumps: usize,
    scale_sizes: Vec<usize>,
    scale_rounds: usize,
    scale_ops: usize,
    shutdown_n: usize,
    kexecs: usize,
    sim_seeds: u64,
    /// Fresh process pairs each hop figure is measured over: where the scheduler places a
    /// pair (one core or two) moves its round trip, so one pair is one draw of that.
    hop_pairs: usize,
}

impl Plan {
    fn new(args: &Args) -> Plan {
        if args.quick {
            Plan {
                quick: true,
                rounds: 2,
                per_round: 20,
                coredumps: 1,
                scale_sizes: vec![50, 200],
                scale_rounds: 1,
                scale_ops: 10,
                shutdown_n: 100,
                kexecs: args.kexecs.unwrap_or(3),
                sim_seeds: 1,
                hop_pairs: 2,
            }
        } else {
            Plan {
                quick: false,
                rounds: 20,
                per_round: 1000,
                coredumps: 20,
                scale_sizes: vec![1_000, 10_000, 100_000],
                scale_rounds: 15,
                scale_ops: 400,
                shutdown_n: 10_000,
                kexecs: args.kexecs.unwrap_or(10_000),
                sim_seeds: 100,
                hop_pairs: 5,
            }
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("echo") {
        return match pingpong::serve(&argv[2..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("teesys-bench echo: {error}");
                ExitCode::FAILURE
            }
        };
    }
    // The stack's own logs stay in its state directory; the bench itself is quiet.
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new("error"))
        .init();
    let args = Args::parse();
    // Servers started here (teed, the secure world) log to the inherited stderr: errors only.
    std::env::set_var("RUST_LOG", "error");
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("teesys-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let plan = Plan::new(args);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned_cpu = if args.all_cpus {
        None
    } else {
        Some(pin_to_first_cpu()?)
    };
    let started = Instant::now();
    let load_start = table::load_average();
    let scratch = std::env::temp_dir().join(format!("teesys-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let mut figures = Vec::new();
    let mut breakdown = Vec::new();
    let only = args.only.as_deref().unwrap_or("");
    let section = |name: &str, body: &mut dyn FnMut() -> Result<(), String>| {
        if name.contains(only) {
            section(name, body);
        }
    };
    section("hops", &mut || {
        hop_figures(&plan, &scratch, &mut figures, &mut breakdown)
    });
    section("hosted stack", &mut || {
        stack_figures(&plan, &scratch, &mut figures, &mut breakdown)
    });
    section("registration scale", &mut || {
        scale_figures(&plan, &mut figures)
    });
    section("simulator", &mut || sim_figures(&plan, &mut figures));
    let hosted_kexec_ms = figures
        .iter()
        .find(|f| f.id == "kexec_cycle")
        .and_then(|f| f.teesys);
    figures.push(qemu::figure(
        args.qemu_timings.as_deref(),
        args.qemu_missing.as_deref(),
        hosted_kexec_ms,
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    let run = Run {
        quick: plan.quick,
        load_start,
        load_end: table::load_average(),
        cpus,
        pinned_cpu,
        seconds: started.elapsed().as_secs_f64(),
        figures,
        breakdown,
    };
    write_outputs(&args.out_dir, &run)
}

/// Runs one section; a failure becomes a line on stderr and the section's figures go missing
/// (the report shows them as not measured).
fn section(name: &str, body: &mut dyn FnMut() -> Result<(), String>) {
    eprintln!("teesys-bench: {name}");
    if let Err(error) = body() {
        eprintln!("teesys-bench: {name} failed: {error}");
    }
}

fn write_outputs(dir: &Path, run: &Run) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let md = dir.join("BENCHMARKS.md");
    std::fs::write(&md, table::markdown(run)).map_err(|e| format!("{}: {e}", md.display()))?;
    let json = dir.join("benchmarks.json");
    let text = serde_json::to_string_pretty(run).map_err(|e| e.to_string())?;
    std::fs::write(&json, text + "\n").map_err(|e| format!("{}: {e}", json.display()))?;
    eprintln!(
        "teesys-bench: wrote {} and {}",
        md.display(),
        json.display()
    );
    Ok(())
}

fn io_err(e: io::Error) -> String {
    e.to_string()
}

/// Samples of `a` and `b` taken in alternating blocks, so that load that comes and goes hits
/// both alike.
fn interleaved(
    plan: &Plan,
    mut a: impl FnMut() -> io::Result<()>,
    mut b: impl FnMut() -> io::Result<()>,
) -> Result<(Samples, Samples), String> {
    let warmup = plan.per_round.min(200);
    let (mut sa, mut sb) = (Samples::default(), Samples::default());
    for _ in 0..warmup {
        a().map_err(io_err)?;
        b().map_err(io_err)?;
    }
    for _ in 0..plan.rounds {
        for (op, samples) in [
            (&mut a as &mut dyn FnMut() -> io::Result<()>, &mut sa),
            (&mut b, &mut sb),
        ] {
            for _ in 0..plan.per_round {
                let start = Instant::now();
                op().map_err(io_err)?;
                samples.push(start.elapsed());
            }
        }
    }
    Ok((sa, sb))
}

fn hop_figures(
    plan: &Plan,
    scratch: &Path,
    figures: &mut Vec<Figure>,
    breakdown: &mut Vec<(String, String)>,
) -> Result<(), String> {
    // client → teed → reply, against a seqpacket ping-pong of the request's size.
    let (mut ours, mut floor) = (Samples::default(), Samples::default());
    let mut size = 0;
    for _ in 0..plan.hop_pairs {
        let mut teed = hops::TeedHop::start().map_err(io_err)?;
        size = teed.request_bytes;
        let mut echo =
            pingpong::Echo::start(pingpong::Kind::Seqpacket, size, scratch).map_err(io_err)?;
        let message = vec![0x5au8; size];
        let (pair_ours, pair_floor) = interleaved(
            plan,
            || teed.null_round_trip(),
            || echo.round_trip(&message),
        )?;
        ours.extend(pair_ours);
        floor.extend(pair_floor);
    }
    figures.push(Figure::measured(
        "null_request",
        "null request client → teed → reply",
        "µs",
        ours.median_us(),
        Some((floor.median_us(), "seqpacket ping-pong, same size")),
        Goal::RatioAtMost(1.5),
        format!("p99 {} µs", num(ours.p99_us())),
        &format!(
            "median of {} round trips of a {size}-byte request teed answers without an SMC \
             (CloseSession of an unknown session), alternating blocks with the ping-pong, over \
             {} pairs of fresh processes",
            ours.len(),
            plan.hop_pairs
        ),
    ));

    // One fast SMC over the conduit, against a 64-byte stream ping-pong.
    let (mut ours, mut floor) = (Samples::default(), Samples::default());
    for _ in 0..plan.hop_pairs {
        let mut smc = hops::SmcHop::start().map_err(io_err)?;
        let mut echo =
            pingpong::Echo::start(pingpong::Kind::Stream, 64, scratch).map_err(io_err)?;
        let frame = [0x11u8; 64];
        let (pair_ours, pair_floor) =
            interleaved(plan, || smc.fast_call(), || echo.round_trip(&frame))?;
        ours.extend(pair_ours);
        floor.extend(pair_floor);
    }
    figures.push(Figure::measured(
        "fast_smc",
        "one fast SMC teed → secure world → teed",
        "µs",
        ours.median_us(),
        Some((floor.median_us(), "64-byte Unix stream ping-pong")),
        Goal::RatioAtMost(1.3),
        format!("p99 {} µs", num(ours.p99_us())),
        &format!(
            "median of {} GET_OS_REVISION calls on a secure-world process's conduit (64 bytes \
             each way), alternating blocks with the ping-pong, over {} pairs of fresh processes",
            ours.len(),
            plan.hop_pairs
        ),
    ));
    breakdown.push((
        "raw Unix stream ping-pong, 64 B (one process hop)".into(),
        format!("{} µs median", num(floor.median_us())),
    ));
    // The floors a TPM command's transports set: a 12-byte command, a 20-byte answer, rounded
    // to one size.
    for (kind, name) in [
        (pingpong::Kind::Stream, "Unix stream"),
        (pingpong::Kind::Tcp, "loopback TCP"),
    ] {
        let mut echo = pingpong::Echo::start(kind, 16, scratch).map_err(io_err)?;
        let message = [0x22u8; 16];
        let mut samples = stats::sample(
            plan.per_round.min(200),
            plan.rounds * plan.per_round,
            || echo.round_trip(&message),
        )
        .map_err(io_err)?;
        breakdown.push((
            format!("raw {name} ping-pong, 16 B"),
            format!(
                "{} µs median, p99 {} µs",
                num(samples.median_us()),
                num(samples.p99_us())
            ),
        ));
    }
    Ok(())
}

fn stack_figures(
    plan: &Plan,
    scratch: &Path,
    figures: &mut Vec<Figure>,
    breakdown: &mut Vec<(String, String)>,
) -> Result<(), String> {
    let swtpm = if tpm::swtpm_installed() {
        let port = tpm::free_port_pair().map_err(io_err)?;
        Some(tpm::Swtpm::start(scratch, port).map_err(|e| format!("swtpm: {e}"))?)
    } else {
        None
    };
    let tcp_port = tpm::free_port_pair().map_err(io_err)?;
    let stack = hosted::Stack::up(&scratch.join("stack"), tcp_port)?;

    // TPM2_GetRandom(8), both transports.
    let how_tpm = |n: usize| {
        format!(
            "median of {n} commands, one connection each side, raw client (no TSS), \
             alternating blocks of {} commands",
            plan.per_round
        )
    };
    let smcs_before = stack.status()?.secure.map(|s| s.smcs);
    let path_pids = stack.tpm_path_pids()?;
    let cpu_before: Vec<Option<(f64, f64)>> = path_pids
        .iter()
        .map(|(_, pid)| hosted::cpu_seconds(*pid))
        .collect();
    let mut unix = tpm::RawTpm::unix(&stack.swtpm_socket()).map_err(io_err)?;
    let mut tcp = tpm::RawTpm::tcp(stack.tcp_port).map_err(io_err)?;
    let measured_commands = 2 * (plan.rounds * plan.per_round + plan.per_round.min(200));
    match &swtpm {
        Some(swtpm) => {
            let mut base_unix = tpm::RawTpm::unix(&swtpm.socket).map_err(io_err)?;
            let mut base_tcp = tpm::RawTpm::tcp(swtpm.tcp_port).map_err(io_err)?;
            let (mut ours, mut base) = interleaved(
                plan,
                || unix.call(&tpm::GET_RANDOM_8).map(drop),
                || base_unix.call(&tpm::GET_RANDOM_8).map(drop),
            )?;
            let how = how_tpm(ours.len());
            figures.push(getrandom_figure("unix", "Unix", &mut ours, &mut base, &how));
            let (mut ours, mut base) = interleaved(
                plan,
                || tcp.call(&tpm::GET_RANDOM_8).map(drop),
                || base_tcp.call(&tpm::GET_RANDOM_8).map(drop),
            )?;
            let how = how_tpm(ours.len());
            figures.push(getrandom_figure("tcp", "TCP", &mut ours, &mut base, &how));
        }
        None => {
            for (id, name) in [("unix", "Unix"), ("tcp", "TCP")] {
                figures.push(Figure::missing(
                    &format!("getrandom_{id}"),
                    &format!("TPM2_GetRandom(8), swtpm protocol over {name}"),
                    Goal::RatioAtMost(2.0),
                    "",
                    "swtpm is not installed (cargo xtask bench installs it)".into(),
                ));
            }
        }
    }
    if let (Some(before), Some(after)) = (smcs_before, stack.status()?.secure.map(|s| s.smcs)) {
        // Status requests make no SMC; every one counted here came from the TPM commands.
        if swtpm.is_some() && measured_commands > 0 {
            let smcs = (after - before) as f64 / measured_commands as f64;
            breakdown.push((
                "SMC round trips per TPM2_GetRandom through tpmd".into(),
                format!(
                    "{smcs:.2} (conduit frames teed → secure world, counted by the secure world)"
                ),
            ));
            for ((name, pid), before) in path_pids.iter().zip(&cpu_before) {
                if let (Some((u0, s0)), Some((u1, s1))) = (before, hosted::cpu_seconds(*pid)) {
                    let per = |secs: f64| secs * 1e6 / measured_commands as f64;
                    breakdown.push((
                        format!("CPU per TPM2_GetRandom in {name}"),
                        format!(
                            "{} µs user + {} µs system (/proc/PID/stat over {measured_commands} \
                             commands)",
                            num(per(u1 - u0)),
                            num(per(s1 - s0))
                        ),
                    ));
                }
            }
            breakdown.push((
                "process hand-offs (a wake-up of another process) per TPM2_GetRandom".into(),
                format!(
                    "{:.0} through tpmd (client → tpmd → teed → secure world and back), 2 \
                     through swtpm: each costs about one raw ping-pong half (below)",
                    4.0 + 2.0 * smcs
                ),
            ));
        }
    }

    // The 8 MiB crash dump through bnxtd to a consumer, against memcpy.
    let mut nic = stack.bnxt()?;
    stack.coredump(&mut nic)?;
    let mut dumps = Samples::default();
    let mut dump_len = 0;
    for _ in 0..plan.coredumps {
        let (took, len) = stack.coredump(&mut nic)?;
        dumps.push(took);
        dump_len = len;
    }
    let mut copies = hosted::memcpy_floor(dump_len, plan.coredumps.max(5));
    let mb = |us: f64| dump_len as f64 / us; // bytes per µs = MB/s
    figures.push(
        Figure::measured(
            "coredump",
            "8 MiB coredump through bnxtd to a consumer",
            "MB/s",
            mb(dumps.median_us()),
            Some((mb(copies.median_us()), "memcpy of 8 MiB")),
            Goal::RatioAtLeast(0.3),
            format!("{} ms per dump", num(dumps.median_us() / 1000.0)),
            &format!(
                "median of {} whole dumps (CoredumpLen, then CopyCoredump chunks), checksum \
                 checked; memcpy between two faulted-in 8 MiB buffers",
                dumps.len()
            ),
        )
        .gap({
            let chunk = tee_proto::bnxt::COREDUMP_CHUNK_MAX;
            let chunks = (dump_len / chunk).max(1);
            // 0.3× of memcpy's bandwidth leaves this long per chunk, round trip included.
            let budget_us = chunk as f64 / (0.3 * mb(copies.median_us()));
            format!(
                "the dump travels in {chunks} frames of {chunk} bytes over the consumer \
                 socket, each a request/response round trip: {} µs per chunk measured here, \
                 where 0.3× of memcpy leaves {} µs per chunk, less than one bare Unix \
                 round trip (the ping-pong lines below), so no protocol with a round trip \
                 per 4 KiB chunk can meet the goal; the consumer's own window (a shared \
                 mapping bnxtd copies each 4 MiB window into, as Linux's tee_bnxt_fw copies \
                 into its caller's buffer) is the fix, not built yet",
                num(dumps.median_us() / chunks as f64),
                num(budget_us)
            )
        }),
    );
    drop(nic);

    // RSS at rest, then kexec cycles, then RSS again.
    let mut control = stack.control()?;
    for _ in 0..2 {
        stack.kexec(&mut control)?;
    }
    let at_rest = stack.processes()?;
    let mut cycles = Samples::with_capacity(plan.kexecs);
    let mut init_ms = Samples::with_capacity(plan.kexecs);
    let mut shutdown_ms = Samples::with_capacity(plan.kexecs);
    let mut server_ms = [Samples::default(), Samples::default(), Samples::default()];
    let ms = |ms: u64| std::time::Duration::from_millis(ms);
    for _ in 0..plan.kexecs {
        let timing = stack.kexec(&mut control)?;
        cycles.push(timing.wall);
        init_ms.push(ms(timing.init_ms));
        if let Some(took) = timing.shutdown_ms {
            shutdown_ms.push(ms(took));
        }
        for (samples, took) in server_ms.iter_mut().zip(timing.server_shutdown_ms) {
            if let Some(took) = took {
                samples.push(ms(took));
            }
        }
    }
    let after = stack.processes()?;
    let mut floor = hosted::restart_floor(if plan.quick { 2 } else { 50 })?;
    let median_ms = cycles.median_us() / 1000.0;
    figures.push(
        Figure::measured(
            "kexec_cycle",
            "hosted kexec cycle (shutdown IPC → every server ready)",
            "ms",
            median_ms,
            Some((
                floor.median_us() / 1000.0,
                "start and reap the 3 server binaries",
            )),
            Goal::ValueAtMost(5.0),
            format!(
                "p99 {} ms; init's own figure median {} ms",
                num(cycles.p99_us() / 1000.0),
                num(init_ms.median_us() / 1000.0)
            ),
            &format!(
                "{} orderly kexecs through init's control socket, wall time from request to \
                 init's report (its status round included)",
                cycles.len()
            ),
        )
        .gap(format!(
            "the cycle restarts three server processes, and their start alone is the \
             baseline ({} ms here); the shutdown IPC before it takes {} ms (tpmd's part {} \
             ms: its TPM2_Shutdown commits NV, which the secure world writes to its state \
             file); see the kexec lines below",
            num(floor.median_us() / 1000.0),
            num(shutdown_ms.median_us() / 1000.0),
            num(server_ms[1].median_us() / 1000.0),
        )),
    );
    for (name, samples) in ["teed", "tpmd", "bnxtd"].iter().zip(server_ms.iter_mut()) {
        breakdown.push((
            format!("kexec: {name}'s shutdown (Shutdown to ack, init's ms clock)"),
            format!(
                "{} ms median, p99 {} ms",
                num(samples.median_us() / 1000.0),
                num(samples.p99_us() / 1000.0)
            ),
        ));
    }
    breakdown.push((
        "kexec: whole shutdown IPC, then the next boot until every server is ready".into(),
        format!(
            "{} ms + {} ms (medians)",
            num(shutdown_ms.median_us() / 1000.0),
            num((init_ms.median_us() - shutdown_ms.median_us()).max(0.0) / 1000.0)
        ),
    ));
    for ((name, before), (_, later)) in at_rest.iter().zip(&after) {
        let restarted = before.pid != later.pid;
        figures.push(Figure::measured(
            &format!("rss_{}", name.replace(' ', "_")),
            &format!("RSS of {name} after {} kexecs", cycles.len()),
            "KiB",
            later.rss_kib as f64,
            Some((before.rss_kib as f64, "at rest")),
            Goal::RatioAtMost(1.1),
            format!(
                "RssAnon {} KiB (at rest {} KiB){}",
                later.rss_anon_kib,
                before.rss_anon_kib,
                if restarted {
                    ", a new process every boot"
                } else {
                    ""
                }
            ),
            "VmRSS from /proc/PID/status after two warm-up kexecs, then after the cycles",
        ));
    }
    drop(stack);
    Ok(())
}

fn getrandom_figure(
    id: &str,
    transport: &str,
    ours: &mut Samples,
    base: &mut Samples,
    how: &str,
) -> Figure {
    Figure::measured(
        &format!("getrandom_{id}"),
        &format!("TPM2_GetRandom(8), swtpm protocol over {transport}"),
        "µs",
        ours.median_us(),
        Some((base.median_us(), "Debian swtpm socket")),
        Goal::RatioAtMost(2.0),
        format!(
            "p99 {} µs (swtpm p99 {} µs)",
            num(ours.p99_us()),
            num(base.p99_us())
        ),
        how,
    )
    .gap(
        "a command through tpmd crosses three process boundaries each way (client → tpmd → \
         teed → secure world: six hand-offs) where swtpm has one (two hand-offs), and most \
         of each process's time per command is system time (poll, recv, send, wake-ups): see \
         the hand-off, SMC and CPU lines below. Fewer hand-offs would need tpmd, teed and the \
         secure world in fewer processes or rings polled across them, which the isolation \
         design rules out for now",
    )
}

fn scale_figures(plan: &Plan, figures: &mut Vec<Figure>) -> Result<(), String> {
    let sizes = &plan.scale_sizes;
    let label = |rows: &[scale::ScaleRow], pick: fn(&scale::ScaleRow) -> f64| {
        rows.iter()
            .map(|r| format!("{}: {} µs", r.live, num(pick(r))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut model = scale::ModelDriver::new()?;
    let model_rows = scale::scale(&mut model, sizes, plan.scale_rounds, plan.scale_ops)?;
    drop(model);
    let mut teed = scale::TeedDriver::new()?;
    let teed_rows = scale::scale(&mut teed, sizes, plan.scale_rounds, plan.scale_ops)?;
    drop(teed);
    let how = format!(
        "one-page buffers; at each size, median of {} batches of {} registrations and {} \
         unregistrations spread over all live ones; core heap 64 MiB",
        plan.scale_rounds, plan.scale_ops, plan.scale_ops
    );
    let floor = scale::memory_floor(sizes, plan.scale_rounds, plan.scale_ops);
    let floor_spread = scale::spread_of(floor.iter().map(|r| r.1));
    let floor_label = floor
        .iter()
        .map(|(live, us)| format!("{live}: {} µs", num(*us)))
        .collect::<Vec<_>>()
        .join(", ");
    for (where_, rows, what) in [
        ("model", &model_rows, "secure-world model, minimal driver"),
        (
            "teed",
            &teed_rows,
            "teed core over the model (no quota, no journal)",
        ),
    ] {
        for (op, pick) in [
            (
                "register",
                (|r: &scale::ScaleRow| r.register_us) as fn(&scale::ScaleRow) -> f64,
            ),
            ("unregister", |r: &scale::ScaleRow| r.unregister_us),
        ] {
            let values: Vec<f64> = rows.iter().map(pick).collect();
            let spread = scale::spread_of(values.iter().copied());
            let smallest = values.first().copied().unwrap_or(0.0);
            let largest = values.last().copied().unwrap_or(0.0);
            let newest = |r: &scale::ScaleRow| r.unregister_newest_us;
            let newest_spread = scale::spread_of(rows.iter().map(newest));
            let mut detail = format!("{}; largest/smallest {}×", label(rows, pick), num(spread));
            if op == "unregister" {
                detail.push_str(&format!(
                    "; the newest instead: {} ({}×)",
                    label(rows, newest),
                    num(newest_spread)
                ));
            }
            figures.push(
                Figure::measured(
                    &format!("{op}_scale_{where_}"),
                    &format!("{op} per operation across live registrations, {what}"),
                    "µs",
                    largest,
                    Some((smallest, "the same at the smallest size")),
                    Goal::RatioAtMost(1.5),
                    detail,
                    &how,
                )
                .gap(format!(
                    "no step walks the registrations (each is a lookup in an index: \
                     unregistering the newest instead grows {}× across the sizes); what grows \
                     is memory: a bare std BTreeMap of as many 256-byte records, given the \
                     same appends and spread-out removals with no registration logic at all, \
                     grows {}× from the smallest size to the largest ({}), as the books of \
                     100k registrations outgrow the CPU caches",
                    num(newest_spread),
                    num(floor_spread),
                    floor_label
                )),
            );
        }
    }
    let n = plan.shutdown_n;
    let (shutdown, bare) = scale::shutdown_vs_bare(n)?;
    figures.push(
        Figure::measured(
            "shutdown_n",
            &format!("teed shutdown of {n} registrations"),
            "ms",
            shutdown * 1000.0,
            Some((
                bare * 1000.0,
                &format!("{n} bare UNREGISTER_SHM round trips"),
            )),
            Goal::RatioAtMost(1.5),
            String::new(),
            "in-process: teed's core sweeping every registration at Shutdown, against a minimal \
         driver unregistering as many on the same model, oldest first",
        )
        .gap(format!(
            "{} µs per registration above the bare round trip: teed's bookkeeping per release (a \
         message slot, the registry, the frames, the sweep's rounds of as many \
         calls as there are slots), while no step grows with the registrations left (the \
         per-operation unregister figures above)",
            num((shutdown - bare) * 1e6 / n.max(1) as f64)
        )),
    );
    Ok(())
}

fn sim_figures(plan: &Plan, figures: &mut Vec<Figure>) -> Result<(), String> {
    let start = Instant::now();
    let mut steps = 0u64;
    for seed in 0..plan.sim_seeds {
        let stats = tee_sim::Sim::run(tee_sim::SimConfig::new(seed)).map_err(|f| f.to_string())?;
        steps += stats.steps;
    }
    let per_s = steps as f64 / start.elapsed().as_secs_f64().max(1e-9);
    // The bare model: fast SMCs in-process, the smallest step a simulated machine can take.
    let config = secure_world::Config::default();
    let mut world = secure_world::SecureWorld::new(config.clone(), 1);
    let mut ram = secure_world::ram::SparseRam::new(config.ram_base, config.ram_size);
    let calls = if plan.quick { 1_000 } else { 1_000_000 };
    let start = Instant::now();
    for _ in 0..calls {
        let regs = [
            u64::from(optee_abi::smc::func::GET_OS_REVISION),
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        std::hint::black_box(world.smc(&mut ram, regs));
    }
    let smc_per_s = calls as f64 / start.elapsed().as_secs_f64().max(1e-9);
    figures.push(Figure::measured(
        "sim_steps",
        "simulator throughput",
        "steps/s",
        per_s,
        Some((smc_per_s, "bare model fast SMCs/s in-process")),
        Goal::Reported,
        format!("{steps} steps over {} seeds", plan.sim_seeds),
        "Sim::run of seeds 0.. under OP-TEE 3.14, every invariant checked (as the 1,000-seed \
         test runs them)",
    ));
    Ok(())
}
