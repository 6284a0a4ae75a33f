//! bnxtd for Redox: `/usr/bin/bnxtd` in the image (sysroot/redox). Type-checked here, linked and
//! run only by a Redox toolchain; on any other target this binary only says so.

#[cfg(target_os = "redox")]
fn main() -> std::process::ExitCode {
    tee_redox::sys::client::main::<bnxtd::BnxtService, bnxtd_redox::NicFrames>(
        tee_redox::policy::BNXTD,
    )
}

#[cfg(not(target_os = "redox"))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "bnxtd-redox is bnxtd for Redox; build it for a Redox target (sysroot/redox/README.md)"
    );
    std::process::ExitCode::from(2)
}
