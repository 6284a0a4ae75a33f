//! tpmd for Redox: `/usr/bin/tpmd` in the image (sysroot/redox). Type-checked here, linked and
//! run only by a Redox toolchain; on any other target this binary only says so.

#[cfg(target_os = "redox")]
fn main() -> std::process::ExitCode {
    tee_redox::sys::client::main::<tpmd::FtpmService, tpmd_redox::RawTpm>(tee_redox::policy::TPMD)
}

#[cfg(not(target_os = "redox"))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "tpmd-redox is tpmd for Redox; build it for a Redox target (sysroot/redox/README.md)"
    );
    std::process::ExitCode::from(2)
}
